"""Result files (anonymize --report, detect --json, dataset --summary) never replace what the user did not ask to.

Before, each was written wherever it pointed: `--report photo.jpg` turned the input photo into JSON, `--report
OUT/photo.jpg` replaced the anonymized photo, `detect x.jpg --json x.jpg` the photo detected on.
"""
import json

import pytest
from PIL import Image

from conftest import toy_faces_dataset
from faceveil.cli import main


@pytest.fixture()
def photos(tmp_path, astronaut):
    d = tmp_path / "photos"
    d.mkdir()
    Image.fromarray(astronaut).save(d / "astro.jpg", quality=95)
    return d


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def test_a_report_over_an_input_or_an_output_is_refused_before_any_work(photos, tmp_path, capsys):
    photo = photos / "astro.jpg"
    before = photo.read_bytes()
    out = tmp_path / "out"
    code, err = run(capsys, "anonymize", photo, "-o", out, "--report", photo, "-q")
    assert code == 2 and "would overwrite an input" in err and str(photo) in err
    assert photo.read_bytes() == before and not out.exists()
    code, err = run(capsys, "anonymize", photos, "-o", out, "--report", out / "astro.jpg", "-q")
    assert code == 2 and "would overwrite an output of this run" in err
    assert not out.exists()
    code, err = run(capsys, "anonymize", photos, "-o", out, "--report", out / "astro.jpg", "-q", "--overwrite")
    assert code == 2, "--overwrite replaces earlier outputs, never this run's own"


def test_an_existing_file_is_replaced_only_if_faceveil_wrote_it_or_under_overwrite(photos, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    code, err = run(capsys, "anonymize", photos, "-o", tmp_path / "o1", "--report", notes, "-q")
    assert code == 2 and "is not a file faceveil wrote" in err and "--overwrite" in err
    assert notes.read_text() == "my notes" and not (tmp_path / "o1").exists()
    report = tmp_path / "r.json"
    for out in ("o2", "o3"):  # a rerun replaces its own report
        code, err = run(capsys, "anonymize", photos, "-o", tmp_path / out, "--report", report, "-q")
        assert code == 0, err
        assert json.loads(report.read_text())["summary"]["written"] == 1
    code, err = run(capsys, "anonymize", photos, "-o", tmp_path / "o1", "--report", notes, "-q", "--overwrite")
    assert code == 0, err
    assert json.loads(notes.read_text())["faceveil"]


def test_detections_json_over_the_photo_is_refused(photos, capsys):
    photo = photos / "astro.jpg"
    before = photo.read_bytes()
    code, err = run(capsys, "detect", photo, "--json", photo, "-q")
    assert code == 2 and "would overwrite an input" in err
    assert photo.read_bytes() == before


def test_a_result_file_that_is_a_folder_is_refused_in_a_line_that_reads_right(photos, tmp_path, capsys):
    """The line was a template filled with each caller's noun: "d.json: the detections is a folder; give a file
    name". It now names the path, then the cause, then what the file was for, for every result file."""
    photo = photos / "astro.jpg"
    folder = tmp_path / "d.json"
    folder.mkdir()
    for argv, what in [(["detect", photo, "--json", folder], "the detections"),
                       (["anonymize", photo, "-o", tmp_path / "o.jpg", "--report", folder], "the report")]:
        code, err = run(capsys, *argv, "-q")
        assert code == 2, err
        assert err == f"faceveil: error: {folder}: is a folder; give a file name for {what}\n", err
    assert not (tmp_path / "o.jpg").exists() and list(folder.iterdir()) == []


def test_a_dataset_summary_inside_a_dataset_or_over_its_labels_is_refused(tmp_path, capsys):
    (tmp_path / "ds").mkdir()
    images, gt = toy_faces_dataset(tmp_path / "ds", 2)
    labels = gt.read_bytes()
    out = tmp_path / "anon"
    base = ["dataset", "anonymize", "--format", "wider", "--images", images, "--labels", gt, "-o", out, "-q",
            "--boxes", "gt"]
    for target, said in ((gt, "would overwrite an input"), (images / "s.json", "inside"), (out / "s.json", "inside")):
        code, err = run(capsys, *base, "--summary", target)
        assert code == 2 and said in err, (target, err)
    assert gt.read_bytes() == labels and not out.exists()
    summary = tmp_path / "s.json"
    code, err = run(capsys, *base, "--summary", summary)
    assert code == 0, err
    assert json.loads(summary.read_text())["done"] == 2
    code, err = run(capsys, *base, "--summary", summary)  # the rerun replaces it: faceveil wrote it
    assert code == 0, err
    assert json.loads(summary.read_text())["skipped"] == 2


def test_a_result_file_in_faceveils_own_folder_is_refused_before_any_work(photos, tmp_path, capsys):
    """`--report OUT/.faceveil/clip.mp4.tracks.json` replaced the video's track record with the report (exit 0), and
    a later --skip-existing run failed "output exists with no record of its settings"; anything else written into
    OUT/.faceveil would be taken for faceveil's own state. Now refused (exit 2) before any work."""
    import numpy as np

    from synthetic_video import write_clip

    clip, out = tmp_path / "clip.mp4", tmp_path / "out"
    write_clip(clip, [np.full((96, 128, 3), 40 * i, np.uint8) for i in range(6)], audio=False)
    assert run(capsys, "anonymize", clip, "-o", out, "-q")[0] == 0
    record = out / ".faceveil" / "clip.mp4.tracks.json"
    before = record.read_bytes()
    for argv in (["anonymize", clip, "-o", out, "--overwrite", "--report", record],
                 ["anonymize", photos, "-o", tmp_path / "o2", "--report", out / ".faceveil" / "r.json"],
                 ["detect", photos / "astro.jpg", "--json", out / ".faceveil" / "d.json"]):
        code, err = run(capsys, *argv, "-q")
        assert code == 2 and "faceveil's own .faceveil folder" in err and err.count("\n") == 1, err
    assert record.read_bytes() == before and not (tmp_path / "o2").exists()
    assert sorted(p.name for p in (out / ".faceveil").iterdir()) == ["clip.mp4.tracks.json"]
    assert run(capsys, "anonymize", clip, "-o", out, "--skip-existing", "-q")[0] == 0


def test_a_killed_runs_temporary_of_a_result_file_is_removed_by_the_next(photos, tmp_path, capsys):
    """Round 2: a SIGKILL while --report (or detect --json, bank/people build -o) was written left its hidden
    temporary, which no later run removed (only anonymize's output folders were cleaned)."""
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".r.json.faceveil.{dead.stdout.strip()}.abcd1234.tmp.json"  # io.atomic's, its writer gone
    stale.write_bytes(b"{")
    assert run(capsys, "detect", photos / "astro.jpg", "--json", tmp_path / "r.json", "-q")[0] == 0
    assert not stale.exists() and (tmp_path / "r.json").is_file()


def test_a_killed_saves_temporary_of_a_bank_or_people_file_is_removed_by_the_next_save(tmp_path):
    """The bank's and the people file's were removed by `bank build` and `people build` each through a call of its
    own before the save (and the report's by a third); now the save itself does it (io.atomic's sweep), so the
    library's Bank.save and People.save, which left them, remove them too. A live writer's temporary stays."""
    import os
    import subprocess
    import sys

    import numpy as np

    from faceveil.anonymize.bank import load_bank
    from faceveil.people import People

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    for name, save in (("b.npz", load_bank().save),
                       ("p.npz", People(["ann"], np.zeros((1, 128), np.float32), np.zeros(1, np.int64)).save)):
        stale = tmp_path / f".{name}.faceveil.{dead.stdout.strip()}.abcd1234.tmp.npz"  # io.atomic's, writer gone
        live = tmp_path / f".{name}.faceveil.{os.getpid()}.abcd1234.tmp.npz"  # this process's: a writer at work
        stale.write_bytes(b"half")
        live.write_bytes(b"half")
        save(tmp_path / name)
        assert not stale.exists() and live.exists() and (tmp_path / name).is_file(), name
        live.unlink()


def test_a_huge_pid_in_a_temporary_like_name_never_costs_the_result(photos, tmp_path, capsys):
    """An audit: `.r.99999999999999999999.abcdefgh.tmp` beside detect --json, --report or in anonymize's -o gave
    "OverflowError: Python int too large to convert to C long" (os.kill in the sweep) after all the work: exit 1,
    the result never written. No writer has such a pid: the name is left alone and the result written."""
    odd = ".r.99999999999999999999.abcdefgh.tmp"
    rep, out = tmp_path / "rep", tmp_path / "out"
    for folder in (rep, out):
        folder.mkdir()
        (folder / odd).write_bytes(b"not faceveil's")
    code, err = run(capsys, "detect", photos / "astro.jpg", "--json", rep / "d.json", "-q")
    assert code == 0 and "Traceback" not in err and (rep / "d.json").is_file(), err
    code, err = run(capsys, "anonymize", photos, "-o", out, "--report", rep / "r.json", "-q", "--detect", "fast")
    assert code == 0 and "Traceback" not in err, err
    assert (out / "astro.jpg").is_file() and (rep / "r.json").is_file()
    assert (rep / odd).read_bytes() == (out / odd).read_bytes() == b"not faceveil's"


def test_the_sweep_removes_only_faceveils_own_temporaries(photos, tmp_path, capsys):
    """An audit: one `detect x --json rep/d.json` deleted a user's `.notes.99999.abcdefgh.tmp`, `.my
    diary.4000000.Backup12.tmp.txt` and a whole folder `.cache.3999999.abcdefgh.tmp/` (rmtree) in rep/: any hidden
    name with a number, 8 characters and ".tmp" counted as a dead writer's temporary. Now only temp_affixes' names
    (with faceveil's marker, mkstemp's characters) count, and only the kind faceveil makes under them."""
    import os
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = dead.stdout.strip()  # no process has it now: only the name decides
    rep = tmp_path / "rep"
    rep.mkdir()
    users = [f".notes.{pid}.abcdefgh.tmp", f".my diary.{pid}.Backup12.tmp.txt", f".d.json.{pid}.abcd1234.tmp.json",
             f".d.json.faceveil.{pid}.ABCD1234.tmp.json", f".d.json.faceveil.0{pid}.abcd1234.tmp.json",
             ".d.json.faceveil.99999999999999999999.abcd1234.tmp.json", f".d.json.faceveil.{pid}.abcd1234.tmp.j.k"]
    for name in users:
        (rep / name).write_bytes(b"precious")
    folders = [f".cache.{pid}.abcdefgh.tmp", f".cache.faceveil.{pid}.abcdefgh.tmp",  # a folder under a file's name
               f".cache.faceveil.{pid}.abcdefgh.tmp.d"]
    for name in folders:
        (rep / name).mkdir()
        (rep / name / "important").write_bytes(b"precious")
    os.symlink(rep / users[0], rep / f".l.faceveil.{pid}.abcdefgh.tmp")  # a link under a file's name
    os.mkfifo(rep / f".f.faceveil.{pid}.abcdefgh.tmp")  # faceveil makes no pipes
    stale = [f".d.json.faceveil.{pid}.abcd_123.tmp.json", f".clip_preview.faceveil.{pid}.abcd1234.tmpdir"]
    (rep / stale[0]).write_bytes(b"{")
    (rep / stale[1]).mkdir()
    (rep / stale[1] / "clip_00000.00s.jpg").write_bytes(b"still")

    code, err = run(capsys, "detect", photos / "astro.jpg", "--json", rep / "d.json", "-q")
    assert code == 0 and (rep / "d.json").is_file(), err
    assert all((rep / name).read_bytes() == b"precious" for name in users), sorted(os.listdir(rep))
    assert all((rep / name / "important").read_bytes() == b"precious" for name in folders), sorted(os.listdir(rep))
    assert (rep / f".l.faceveil.{pid}.abcdefgh.tmp").is_symlink() and (rep / f".f.faceveil.{pid}.abcdefgh.tmp").exists()
    assert not [name for name in stale if (rep / name).exists()], "a dead writer's temporary file and stills folder"


# A writer as a sweep in another pid namespace sees it (a container writing to a shared folder): its pid, the one in
# its temporary's name, is no process here. It waits inside its write until told to finish.
_OTHER_NAMESPACE_WRITER = r"""
import os, sys
os.getpid = lambda: int(sys.argv[2])
from faceveil.io.atomic import write_atomic
def slow(f):
    print("writing", flush=True)
    sys.stdin.readline()
    return f.write(b"the other run's report")
write_atomic(sys.argv[1], slow)
print("written", flush=True)
"""


def test_a_live_writers_temporary_stays_even_where_its_pid_is_no_process(photos, tmp_path, capsys):
    """An audit: a writer under `unshare --pid` (its pid 9) held `.other-report.json.9.XXXX.tmp.json`; a sweep in
    the host's namespace found no process 9 (os.kill) and removed the live temporary: the writer failed after its
    work. Now the writer holds an flock on its temporary until the rename and a sweep removes only what it can
    lock: the live writer's stays and it finishes; one killed (SIGKILL: the kernel drops its lock) is removed."""
    import os
    import signal
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    rep = tmp_path / "rep"
    rep.mkdir()
    writers = []
    try:
        for name in ("other.json", "killed.json"):
            w = subprocess.Popen([sys.executable, "-c", _OTHER_NAMESPACE_WRITER, str(rep / name), dead.stdout.strip()],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            writers.append(w)
            assert w.stdout.readline() == "writing\n"
        other, killed = ([p for p in rep.iterdir() if p.name.startswith(f".{n}.")] for n in ("other", "killed"))
        assert len(other) == len(killed) == 1 and dead.stdout.strip() in other[0].name
        writers[1].send_signal(signal.SIGKILL)
        writers[1].wait(timeout=60)
        code, err = run(capsys, "detect", photos / "astro.jpg", "--json", rep / "mine.json", "-q")
        assert code == 0, err
        assert other[0].exists(), "the live writer's temporary is left"
        assert not killed[0].exists(), "the killed writer's is removed"
        out, _ = writers[0].communicate("go\n", timeout=60)
        assert writers[0].returncode == 0 and out == "written\n", out
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
                w.wait()
    assert (rep / "other.json").read_bytes() == b"the other run's report"
    assert sorted(os.listdir(rep)) == ["mine.json", "other.json"]


def test_a_result_file_named_dash_is_standard_output(photos, tmp_path, capsys, monkeypatch):
    """`--json -`, `--report -`, `--summary -`: a file named "-" appeared in the working folder and nothing was
    printed (ffmpeg and most tools read "-" as standard output). Now the JSON is printed, and no file is made."""
    monkeypatch.chdir(tmp_path)
    assert main(["detect", str(photos / "astro.jpg"), "--json", "-", "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["files"][0]["faces"]
    assert main(["anonymize", str(photos), "-o", "out", "--report", "-", "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["written"] == 1
    (tmp_path / "ds").mkdir()
    images, gt = toy_faces_dataset(tmp_path / "ds", 2)
    assert main(["dataset", "anonymize", "--format", "wider", "--images", str(images), "--labels", str(gt), "-o",
                 "anon", "-q", "--boxes", "gt", "--summary", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["done"] == 2
    assert not (tmp_path / "-").exists()
