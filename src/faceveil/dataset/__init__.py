"""Dataset mode: anonymize an annotated dataset so that its labels stay valid.

The job reads the labels (``io.labels``), anonymizes every image in place in
a mirrored tree under OUT (same names, same format), copies the label files
byte for byte, and records every finished file in ``OUT/manifest.jsonl``:
input and output SHA-256, faces from labels and from detection, method,
parameters, seed, faceveil version and time.

Resumable and crash-safe: images are written atomically before their
manifest line is appended and fsynced, so after a kill -9 an image either has
a line whose hash matches the file on disk (skipped next time) or it is done
again with the same result (the random stream of an image depends only on
the seed and its path, never on worker order). The manifest is compacted, one
line per file, when a run finishes.

Backends: local worker processes, or Ray actors (a local Ray instance unless
an address is given). Both call the same ``worker.process_item`` so their outputs
are byte-identical.

Modules: ``plan`` (labels -> work orders), ``worker`` (one image), ``orient``
(EXIF frames), ``backends`` (local pool, Ray), ``job`` (manifest, resume,
the run), ``verify`` (an output against its manifest), ``config`` (the types).
"""
from .backends import run_local, run_ray, start_ray
from .config import BOX_MODES, MANIFEST, OWN_DIR, REVIEW_FILE, DatasetConfig, Item, Summary, named_images
from .job import anonymize_dataset
from .orient import boxes_to_oriented, exif_orientation, to_oriented, to_stored, write_checked
from .plan import Plan, default_boxes, plan
from .verify import VerifyReport, verify

__all__ = [
    "BOX_MODES", "MANIFEST", "OWN_DIR", "REVIEW_FILE", "DatasetConfig", "Item", "Plan", "Summary", "VerifyReport",
    "anonymize_dataset", "boxes_to_oriented", "default_boxes", "exif_orientation", "plan", "run_local", "run_ray",
    "start_ray", "to_oriented", "to_stored", "verify", "write_checked",
]
