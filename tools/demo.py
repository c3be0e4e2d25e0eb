"""`make demo`: anonymize the astronaut portrait that ships with scikit-image."""
from pathlib import Path

from PIL import Image
from skimage import data

from faceveil.cli import main

src_dir = Path("demo-input")
src_dir.mkdir(exist_ok=True)
src = src_dir / "astronaut.png"
Image.fromarray(data.astronaut()).save(src)
# demo-output/ is the demo's own folder: a second `make demo` replaces what the first wrote.
code = main(["anonymize", str(src), "-o", "demo-output", "--report", "demo-output/report.json", "-q", "--overwrite"])
if code == 0:
    import json

    report = json.loads(Path("demo-output/report.json").read_text())
    print(f"faceveil demo: {report['summary']['faces']} face(s) found and blurred")
    print(f"  input:  {src.resolve()}")
    print(f"  output: {Path('demo-output/astronaut.png').resolve()}")
    print(f"  report: {Path('demo-output/report.json').resolve()}")
raise SystemExit(code)
