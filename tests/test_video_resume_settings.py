"""A folder of videos resumed with --skip-existing (local or --backend ray) leaves an existing output alone only
when its track record says it was made with the same settings, as the dataset mode checks its manifest:
otherwise the run stops before any work (exit 2, one line naming the output and the setting)."""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest

from faceveil.cli import main
from synthetic_video import write_clip

FPS = 12


@pytest.fixture()
def footage(tmp_path):
    rng = np.random.default_rng(4)
    src = tmp_path / "footage"
    (src / "sub").mkdir(parents=True)
    for name in ("a.mp4", "sub/b.mp4"):
        write_clip(src / name, [rng.integers(0, 256, (48, 64, 3), np.uint8) for _ in range(4)], FPS, audio=False)
    return src


def _run(capsys, *args) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["anonymize", *map(str, args), "-q"])
    return code, capsys.readouterr().err


def test_resume_with_other_settings_is_refused(footage, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(capsys, footage, "-o", out)[0] == 0
    a, b = out / "a.mp4", out / "sub" / "b.mp4"
    b.unlink()  # a run that died after a.mp4
    before = a.stat().st_mtime_ns

    for other in (["--crf", "30"], ["--method", "pixelate"], ["--hold", "3"]):
        code, err = _run(capsys, footage, "-o", out, "--skip-existing", *other)
        assert code == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"faceveil: error: {a}: made with other settings (")
        assert not b.exists()  # refused before any work
    assert "crf: 30 here, 20 in" in _run(capsys, footage, "-o", out, "--skip-existing", "--crf", "30")[1]

    # the same settings resume: b.mp4 done, a.mp4 left as it was (a --preview still changes no video byte)
    code, err = _run(capsys, footage, "-o", out, "--skip-existing", "--preview", "1")
    assert code == 0, err
    assert b.exists() and a.stat().st_mtime_ns == before
    assert "1 existing output left as it was" in err


def test_resume_over_an_output_without_settings_on_record_is_refused(footage, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(capsys, footage, "-o", out)[0] == 0
    record = out / ".faceveil" / "a.mp4.tracks.json"
    data = json.loads(record.read_text())
    assert data["settings"]["crf"] == 20 and data["settings"]["method"] == "blur"  # recorded beside the output
    del data["settings"]
    record.write_text(json.dumps(data))
    code, err = _run(capsys, footage, "-o", out, "--skip-existing")
    assert code == 2 and "a.mp4: output exists with no record of its settings" in err and len(err.splitlines()) == 1
    record.unlink()
    assert _run(capsys, footage, "-o", out, "--skip-existing")[0] == 2
    assert _run(capsys, footage, "-o", out, "--overwrite")[0] == 0  # the explicit policy replaces it
    assert _run(capsys, footage, "-o", out, "--skip-existing")[0] == 0


def test_resume_over_the_output_of_a_replaced_input_is_refused(footage, tmp_path, capsys):
    """Round 5: a clip replaced under the same name (another cut, a re-export) between a run and its resume kept the
    old clip's output, "left as it was" (exit 0): the new clip was never anonymized, and nothing said so. Its record
    holds the key of the input it was made from (io.manifest.sample_sha256): the resume is refused, exit 2, one line
    naming both, before any work; --overwrite redoes it."""
    out = tmp_path / "out"
    assert _run(capsys, footage, "-o", out)[0] == 0
    a, b = out / "a.mp4", out / "sub" / "b.mp4"
    b.unlink()  # a run that died after a.mp4
    before = a.read_bytes()
    rng = np.random.default_rng(5)
    write_clip(footage / "a.mp4", [rng.integers(0, 256, (48, 64, 3), np.uint8) for _ in range(6)], FPS, audio=False)
    code, err = _run(capsys, footage, "-o", out, "--skip-existing")
    assert (code, err) == (2, f"faceveil: error: {a}: made from another video than {footage / 'a.mp4'} is now "
                              f"({footage / 'a.mp4'} changed since, says {out / '.faceveil' / 'a.mp4.tracks.json'}); "
                              "--overwrite redoes it, or use a new output folder\n"), err
    assert a.read_bytes() == before and not b.exists()  # refused before any work
    assert _run(capsys, footage, "-o", out, "--overwrite")[0] == 0 and a.read_bytes() != before
    assert _run(capsys, footage, "-o", out, "--skip-existing") == (0, f"faceveil: nothing to do -> {out}; 2 existing "
                                                                      "outputs left as they were\n")


def test_ray_backend_resume_with_other_settings_is_refused(footage, tmp_path, capsys):
    """The same check before the Ray backend starts (refused runs start no Ray at all)."""
    out = tmp_path / "out"
    assert _run(capsys, footage, "-o", out)[0] == 0
    (out / "sub" / "b.mp4").unlink()
    code, err = _run(capsys, footage, "-o", out, "--skip-existing", "--backend", "ray", "--jobs", "2", "--crf", "30")
    assert code == 2 and "a.mp4: made with other settings (crf: 30 here, 20 in" in err
    assert not (out / "sub" / "b.mp4").exists()


def test_record_is_written_once_the_video_has_its_name_and_the_earlier_one_is_gone_at_the_rename(
        footage, tmp_path, monkeypatch):
    """The record was written before the video got its name: a run killed between the two (or whose rename failed)
    left the earlier video beside the new run's record, whose settings a resume took for that video's. Now the
    earlier record is set aside before the rename and the new one written after it: a run killed in between leaves
    a video without a record (the review flags it, a resume refuses it), never one beside another render's."""
    from faceveil.io import atomic
    from faceveil.pipeline import Anonymizer
    from faceveil.video import process_video, tracks_path

    dst = tmp_path / "o.mp4"
    record = tracks_path(dst)
    assert process_video(Anonymizer(method="blur", preset="fast"), footage / "a.mp4", dst, progress=False).status \
        == "written" and json.loads(record.read_text())["settings"]["method"] == "blur"
    seen = []
    real = atomic.os.replace

    def replace(src, target, *a, **k):
        if str(target) == str(dst):
            seen.append(os.path.lexists(record))
        return real(src, target, *a, **k)

    monkeypatch.setattr(atomic.os, "replace", replace)
    r = process_video(Anonymizer(method="pixelate", preset="fast"), footage / "a.mp4", dst, progress=False)
    assert r.status == "written" and not r.warnings, (r.error, r.warnings)
    assert seen == [False], "a record beside the video at its rename"
    assert json.loads(record.read_text())["settings"]["method"] == "pixelate"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".faceveil", "footage", "o.mp4"]  # nothing set aside left


@pytest.mark.parametrize("err", [errno.EIO, errno.ENOSPC, errno.EACCES])
@pytest.mark.parametrize("earlier", ["record", "none"])
def test_a_video_that_fails_to_get_its_name_leaves_the_earlier_record_byte_for_byte(tmp_path, capsys, monkeypatch,
                                                                                    err, earlier):
    """`--overwrite -m pixelate` whose video's rename failed (EIO, a full disk, a folder refusing it): the new run's
    track record, written before, stayed beside the earlier video (exit 1, "1 failed"): a resume with -m pixelate
    took that video for one made so, and the review showed the pixelated run's boxes on it. The earlier record is
    put back byte for byte now, or none left where there was none (an output made without one), with the earlier
    stills: the output folder as it was."""
    from faceveil.io import atomic

    rng = np.random.default_rng(3)
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    write_clip(src / "clip.mp4", [rng.integers(0, 256, (48, 64, 3), np.uint8) for _ in range(6)], FPS, audio=False)
    assert _run(capsys, src / "clip.mp4", "-o", out, "--preview", "0.2")[0] == 0
    record = out / ".faceveil" / "clip.mp4.tracks.json"
    if earlier == "none":
        record.unlink()

    def files() -> dict[str, bytes]:
        return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    before = files()
    real = atomic.os.replace

    def refuse(a, b, *rest, **kw):  # the video's rename (its commit), once its stills are in place
        if str(b) == str(out / "clip.mp4"):
            raise OSError(err, os.strerror(err), str(a))
        return real(a, b, *rest, **kw)

    monkeypatch.setattr(atomic.os, "replace", refuse)
    code, msg = _run(capsys, src / "clip.mp4", "-o", out, "--overwrite", "--preview", "0.25", "-m", "pixelate")
    monkeypatch.undo()
    assert code == 1 and "1 failed (not written)" in msg, msg
    line = msg.splitlines()[0]
    assert line.startswith("faceveil: error: ") and os.strerror(err) in line and "Traceback" not in msg, msg
    assert files() == before, "the earlier video, its stills and its record (or none), and nothing else"
    assert sorted(p.name for p in out.iterdir()) == [".faceveil", "clip.mp4", "clip.mp4_preview"]
    assert _run(capsys, src / "clip.mp4", "-o", out, "--overwrite", "--preview", "0.25", "-m", "pixelate")[0] == 0
    assert json.loads(record.read_text())["settings"]["method"] == "pixelate"


def test_a_record_that_cannot_be_written_after_the_video_leaves_none_not_the_earlier_one(tmp_path, capsys,
                                                                                        monkeypatch):
    """The record is written once the video has its name: where that write fails (a full disk), the video stays,
    with a warning naming the failure, and no record: the earlier one, which describes the replaced video, is not
    left beside it (a resume refuses the video, the review flags it). Before, the file failed with the new run's
    record or, where only its folder failed, passed with the earlier record beside the new video."""
    from faceveil.video import job

    rng = np.random.default_rng(3)
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    write_clip(src / "clip.mp4", [rng.integers(0, 256, (48, 64, 3), np.uint8) for _ in range(6)], FPS, audio=False)
    assert _run(capsys, src / "clip.mp4", "-o", out)[0] == 0
    video = (out / "clip.mp4").read_bytes()
    write_clip(src / "clip.mp4", [np.full((48, 64, 3), 40 * i, np.uint8) for i in range(6)], FPS, audio=False)

    def full(dst, *a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))

    monkeypatch.setattr(job, "write_record", full)
    code, msg = _run(capsys, src / "clip.mp4", "-o", out, "--overwrite", "-m", "pixelate")
    monkeypatch.undo()
    assert code == 0 and "track record not written: [Errno 28] No space left on device" in msg, msg
    assert (out / "clip.mp4").read_bytes() != video and os.listdir(out / ".faceveil") == []
    code, msg = _run(capsys, src / "clip.mp4", "-o", out, "--skip-existing", "-m", "pixelate")
    assert code == 2 and "clip.mp4: output exists with no record of its settings" in msg, msg


def test_preview_stills_never_land_on_each_other_or_on_an_output(tmp_path, capsys, astronaut):
    """--preview wrote OUT/<stem>_preview/<stem>_<s>.jpg: clip.mp4 and clip.mov shared that folder (refused in one
    run), and an input image clip_preview/clip_00000.00s.jpg was replaced by a still. Each video's stills folder is
    named after its whole name now (OUT/clip.mp4_preview/): the two videos are fine in one run, each with its own."""
    from PIL import Image

    from faceveil.video import job

    rng = np.random.default_rng(5)
    src = tmp_path / "in"
    src.mkdir()
    for name in ("clip.mp4", "clip.mov"):
        write_clip(src / name, [rng.integers(0, 256, (48, 64, 3), np.uint8) for _ in range(3)], FPS, audio=False)
    out = tmp_path / "out"
    code, err = _run(capsys, src, "-o", out, "--preview", "0.1")
    assert code == 0 and err.count("\n") == 1, err
    for name in ("clip.mp4", "clip.mov"):
        stills = sorted((out / f"{name}_preview").iterdir())
        assert len(stills) == 2 and {job.preview_video(p) for p in stills} == {out / name}
    (src / "clip.mov").unlink()
    (src / "clip.mp4_preview").mkdir()
    Image.fromarray(astronaut[:64, :64]).save(src / "clip.mp4_preview" / "clip_00000.00s.jpg")
    out2 = tmp_path / "out2"
    code, err = _run(capsys, src, "-o", out2, "--preview", "0.1")
    assert code == 2 and "an output inside" in err, err
    assert _run(capsys, src / "clip.mp4", "-o", out2, "--preview", "0.1")[0] == 0
    assert len(list((out2 / "clip.mp4_preview").glob("*.jpg"))) >= 2


def test_two_videos_of_one_stem_keep_their_own_stills_across_runs(tmp_path, capsys):
    """`anonymize c.mov -o out --preview`, then `anonymize c.mp4 -o out --preview`: both wrote out/c_preview/, the
    second run replaced the first's stills of one name (c_00000.00s.jpg), an overwrite of c.mov removed c.mp4's
    stills as its own earlier ones, and review gave them all to c.mov. Each video's stills are its own now."""
    from faceveil.video import job

    rng = np.random.default_rng(7)
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    write_clip(src / "c.mov", [rng.integers(0, 256, (48, 64, 3), np.uint8) for _ in range(10)], 10, audio=False)
    write_clip(src / "c.mp4", [np.full((48, 64, 3), 40 * i, np.uint8) for i in range(6)], 10, audio=False)

    def stills(name) -> dict[str, bytes]:
        folder = job.preview_dir(out / name)
        return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}

    assert _run(capsys, src / "c.mov", "-o", out, "--preview", "0.5")[0] == 0
    mov = stills("c.mov")
    assert sorted(mov) == ["c_00000.00s.jpg", "c_00000.50s.jpg"]
    assert _run(capsys, src / "c.mp4", "-o", out, "--preview", "0.2")[0] == 0
    mp4 = stills("c.mp4")
    assert sorted(mp4) == ["c_00000.00s.jpg", "c_00000.20s.jpg", "c_00000.40s.jpg"]
    assert stills("c.mov") == mov and mp4["c_00000.00s.jpg"] != mov["c_00000.00s.jpg"]
    for name, made in (("c.mov", mov), ("c.mp4", mp4)):  # review gives each still to its own video
        assert {job.preview_video(job.preview_dir(out / name) / n) for n in made} == {out / name}
    assert _run(capsys, src / "c.mov", "-o", out, "--overwrite", "--preview", "0.3")[0] == 0
    assert sorted(stills("c.mov")) == [f"c_00000.{s}s.jpg" for s in ("00", "30", "60", "90")]
    assert stills("c.mp4") == mp4, "an overwrite of c.mov removed or replaced c.mp4's stills"
    assert _run(capsys, src / "c.mp4", "-o", out, "--overwrite")[0] == 0  # no --preview now: c.mp4's go, only
    assert stills("c.mp4") == {} and sorted(stills("c.mov")) == [f"c_00000.{s}s.jpg" for s in ("00", "30", "60", "90")]


def test_preview_stills_of_a_long_video_name_are_cut_to_fit_and_kept_apart(tmp_path, capsys):
    """A video named 246-255 bytes: its stills' names (<stem>_<seconds>s.jpg) passed 255 bytes, and the video
    failed at its first still after all its frames were read (exit 1, nothing written). The stem is cut to fit
    (video.job.preview_path), and the folder's name (the video's whole name) cut and told apart by a hash: two
    videos whose names are alike up to the cut were refused in one run, and across runs shared their stills."""
    import os

    from faceveil.video import job

    rng = np.random.default_rng(6)
    src = tmp_path / "in"
    src.mkdir()
    long = "v" * 247
    names = (f"{long}.mp4", f"{long}xy.mkv")
    for name in names:
        write_clip(src / name, [rng.integers(0, 256, (48, 64, 3), np.uint8) for _ in range(4)], FPS, audio=False)
    out = tmp_path / "out"
    code, err = _run(capsys, src, "-o", out, "--preview", "0.1")
    assert code == 0 and err.count("\n") == 1 and "Traceback" not in err, err
    folders = sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert folders == sorted(job.preview_dir(out / name) for name in names) and len(folders) == 2
    for name in names:
        stills = sorted(job.preview_dir(out / name).iterdir())
        assert len(stills) >= 2 and all(len(os.fsencode(p.name)) == 255 for p in stills), [p.name for p in stills]
        assert {job.preview_video(p) for p in stills} == {out / name}  # what review lists with the video


def test_preview_stills_appear_only_with_their_video_and_a_killed_runs_are_removed(tmp_path, capsys, monkeypatch):
    """A SIGKILLed run left its first stills in OUT/<name>_preview/ for good, a rerun (which removed the video's
    temporary) left them (an audit). Stills go to a temporary folder moved into place with the video; a dead
    writer's is removed by the next run, as its temporary video is; a failed video leaves none."""
    from faceveil.video import job

    rng = np.random.default_rng(6)
    src = tmp_path / "in"
    src.mkdir()
    write_clip(src / "clip.mp4", [rng.integers(0, 256, (48, 64, 3), np.uint8) for _ in range(6)], FPS, audio=False)
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".clip.mp4_preview.faceveil.999999999.abcd1234.tmpdir"  # a killed run's (a pid no process has)
    stale.mkdir()
    (stale / "clip_00000.00s.jpg").write_bytes(b"still")
    code, err = _run(capsys, src, "-o", out)
    assert code == 0 and "1 temporary files of interrupted runs removed" in err and not stale.exists(), err
    assert not (out / "clip.mp4_preview").exists(), "no stills were asked for"

    def fail(*a, **k):  # the video fails after its first stills were written
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(job._Stills, "publish", fail)
    assert _run(capsys, src, "-o", out, "--preview", "0.05", "--overwrite")[0] == 1
    assert not (out / "clip.mp4_preview").exists() and not list(out.glob(".clip.mp4_preview*"))
    monkeypatch.undo()
    assert _run(capsys, src, "-o", out, "--preview", "0.05", "--overwrite")[0] == 0
    assert len(list((out / "clip.mp4_preview").glob("*.jpg"))) >= 2 and not list(out.glob(".clip.mp4_preview*"))


def test_preview_stills_under_a_hundredth_of_a_second_apart_each_keep_their_own_file(tmp_path, capsys):
    """Stills were named by their seconds to 0.01 s: 8 frames at 200 fps with --preview 0.001 left 5 stills (exit
    0, no message), each one at 0.01 s replaced by the next. A still whose seconds name an earlier still's takes its
    frame's index too (video.job.preview_path), and review (preview_video) knows each as the video's."""
    from faceveil.video import job

    rng = np.random.default_rng(7)
    src = tmp_path / "in"
    src.mkdir()
    write_clip(src / "clip.mp4", [rng.integers(0, 256, (48, 64, 3), np.uint8) for _ in range(8)], 200, audio=False)
    out = tmp_path / "out"
    code, err = _run(capsys, src / "clip.mp4", "-o", out, "--preview", "0.001")
    assert code == 0, err
    stills = sorted((out / "clip.mp4_preview").iterdir())
    # frames at 0, 0.005, 0.01, ... 0.035 s: their seconds to 0.01 s are 0.00 0.01 0.01 0.01 0.02 0.03 0.03 0.04
    assert [p.name for p in stills] == ["clip_00000.00s.jpg", "clip_00000.01s.jpg", "clip_00000.01s_f2.jpg",
                                        "clip_00000.01s_f3.jpg", "clip_00000.02s.jpg", "clip_00000.03s.jpg",
                                        "clip_00000.03s_f6.jpg", "clip_00000.04s.jpg"]
    assert len({p.read_bytes() for p in stills}) == 8  # 8 frames of noise: 8 pictures
    assert {job.preview_video(p) for p in stills} == {out / "clip.mp4"}
    assert job.preview_video(out / "clip.mp4_preview" / "clip_00000.01s_f02.jpg") is None  # not a name it writes


def test_preview_stills_fall_on_the_grid_of_the_interval_and_float_drift_skips_none(tmp_path, capsys):
    """The next still was due --preview seconds after the last one's frame: 0.2 + 0.1 is 0.30000000000000004, past
    the frame at 0.3, so a 10 fps clip with --preview 0.1 got no still at 0.3 (9 of 10), and the stills drifted off
    the grid (--preview 0.25: 0, 0.3, 0.6, 0.9). Each still is now the first frame at or after k * SECONDS."""
    rng = np.random.default_rng(8)
    src = tmp_path / "in"
    src.mkdir()
    write_clip(src / "clip.mp4", [rng.integers(0, 256, (48, 64, 3), np.uint8) for _ in range(10)], 10, audio=False)
    for interval, seconds in (("0.1", [f"0.{i}0" for i in range(10)]), ("0.25", ["0.00", "0.30", "0.50", "0.80"])):
        out = tmp_path / f"out{interval}"
        code, err = _run(capsys, src / "clip.mp4", "-o", out, "--preview", interval)
        assert code == 0, err
        assert sorted(p.name for p in (out / "clip.mp4_preview").iterdir()) == [f"clip_0000{s}s.jpg" for s in seconds]


def test_an_overwrite_leaves_only_this_runs_preview_stills_and_a_failed_one_leaves_the_earlier_run_whole(
        tmp_path, capsys, monkeypatch):
    """`--preview 0.2 -m pixelate`, then `--overwrite --preview 0.25`: the pixelated stills at 0.20, 0.40 and 0.60 s
    stayed beside the new ones (a weaker method's, as if of this run), and a third run without --preview left all
    of them. Once the new video has its name, the stills of this video that the run did not write are removed (a
    photo of the user's and names preview_path never gives stay; a folder left empty goes); a run that fails
    leaves the earlier video and its stills as they were."""
    from faceveil.video import job

    rng = np.random.default_rng(9)
    src = tmp_path / "in"
    src.mkdir()
    write_clip(src / "clip.mp4", [rng.integers(0, 256, (48, 64, 3), np.uint8) for _ in range(10)], 10, audio=False)
    out = tmp_path / "out"
    folder = out / "clip.mp4_preview"

    def stills() -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}

    assert _run(capsys, src / "clip.mp4", "-o", out, "--preview", "0.2", "-m", "pixelate")[0] == 0
    assert sorted(stills()) == [f"clip_00000.{s}s.jpg" for s in ("00", "20", "40", "60", "80")]
    mine = ["mine.jpg", "clip_0.20s.jpg", "clip_00000.20s.jpg.bak"]  # the user's: not names preview_path gives
    for name in mine:
        (folder / name).write_bytes(b"mine")
    code, err = _run(capsys, src / "clip.mp4", "-o", out, "--overwrite", "--preview", "0.25")
    assert code == 0 and err.count("\n") == 1 and "warning" not in err, err
    second = stills()
    assert sorted(second) == sorted(mine + [f"clip_00000.{s}s.jpg" for s in ("00", "30", "50", "80")])
    video = (out / "clip.mp4").read_bytes()

    def fail(*a, **k):  # the run fails at its first still, before the video is committed
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(job, "write_image", fail)
    assert _run(capsys, src / "clip.mp4", "-o", out, "--overwrite", "--preview", "0.2", "-m", "pixelate")[0] == 1
    monkeypatch.undo()
    assert stills() == second and (out / "clip.mp4").read_bytes() == video
    assert _run(capsys, src / "clip.mp4", "-o", out, "--overwrite")[0] == 0
    assert sorted(stills()) == sorted(mine)
    for name in mine:
        (folder / name).unlink()
    assert _run(capsys, src / "clip.mp4", "-o", out, "--overwrite", "--preview", "0.5")[0] == 0
    assert sorted(stills()) == ["clip_00000.00s.jpg", "clip_00000.50s.jpg"]
    assert _run(capsys, src / "clip.mp4", "-o", out, "--overwrite")[0] == 0
    assert not folder.exists()


@pytest.mark.parametrize("err, nth", [(28, 2), (13, 1), (5, None)])
def test_stills_that_cannot_be_moved_into_place_fail_the_file_with_the_earlier_output_whole(
        tmp_path, capsys, monkeypatch, err, nth):
    """The stills were moved into OUT/clip.mp4_preview/ after the new video had its name: a full disk or a folder
    that refused them there failed the file ("1 failed (not written)", exit 1) with the new video and its track
    record in place, and the earlier stills half replaced or removed. They are moved in before the video gets its
    name now: a failure puts the earlier stills back, and the video and its record stay the earlier run's. A video
    that fails to get its name once its stills are in place (``nth`` None: its fsync fails, EIO) puts them back too,
    and its earlier track record (the new run's was left in its place: only a FileExistsError put that back)."""
    import os

    from faceveil.io import atomic
    from faceveil.video import job

    rng = np.random.default_rng(9)
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    write_clip(src / "clip.mp4", [rng.integers(0, 256, (48, 64, 3), np.uint8) for _ in range(10)], 10, audio=False)
    assert _run(capsys, src / "clip.mp4", "-o", out, "--preview", "0.2")[0] == 0
    folder = out / "clip.mp4_preview"

    def files() -> dict[str, bytes]:
        return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    before = files()
    assert sorted(p.name for p in folder.iterdir()) == [f"clip_00000.{s}s.jpg" for s in ("00", "20", "40", "60", "80")]
    write_clip(src / "clip.mp4", [np.full((48, 64, 3), 25 * i, np.uint8) for i in range(10)], 10, audio=False)
    replace, moves = os.replace, []

    def refuse(a, b, *rest, **kw):  # the nth still moved from its temporary folder into the stills folder fails
        if os.path.dirname(b) == str(folder) and os.path.dirname(a).endswith(".tmpdir"):
            moves.append(b)
            if len(moves) == nth:
                raise OSError(err, os.strerror(err), a, None, b)
        return replace(a, b, *rest, **kw)

    fsync = atomic._fsync_path

    def no_fsync(path, directory=False):  # the video's temporary file, once its stills are in place
        if path.name.endswith(".tmp.mp4"):
            moves.append(sorted(p.name for p in folder.iterdir()))
            raise OSError(err, os.strerror(err), str(path))
        return fsync(path, directory)

    if nth is None:
        monkeypatch.setattr(atomic, "_fsync_path", no_fsync)
    else:
        monkeypatch.setattr(job.os, "replace", refuse)
    code, out_err = _run(capsys, src / "clip.mp4", "-o", out, "--overwrite", "--preview", "0.25")
    monkeypatch.undo()
    assert code == 1 and "1 failed (not written)" in out_err, out_err
    assert files() == before, "the earlier video, its record and its stills, and nothing else"
    if nth is None:  # the new stills were in place, beside the earlier ones, when the video failed
        assert moves == [[f"clip_00000.{s}s.jpg" for s in ("00", "20", "30", "40", "50", "60", "80")]], moves
    else:
        assert len(moves) == nth and out_err.splitlines()[0] == (
            f"faceveil: error: {folder}: cannot write: {os.strerror(err)}"), out_err
    assert _run(capsys, src / "clip.mp4", "-o", out, "--overwrite", "--preview", "0.25")[0] == 0
    assert sorted(p.name for p in folder.iterdir()) == [f"clip_00000.{s}s.jpg" for s in ("00", "30", "50", "80")]
    assert (out / "clip.mp4").read_bytes() != before["clip.mp4"]


def test_an_earlier_still_that_cannot_be_removed_is_named_in_a_warning(tmp_path, capsys, monkeypatch):
    """A still of an earlier run that the overwrite cannot remove stays, named in one warning line."""
    import pathlib

    rng = np.random.default_rng(9)
    src = tmp_path / "in"
    src.mkdir()
    write_clip(src / "clip.mp4", [rng.integers(0, 256, (48, 64, 3), np.uint8) for _ in range(10)], 10, audio=False)
    out = tmp_path / "out"
    assert _run(capsys, src / "clip.mp4", "-o", out, "--preview", "0.2")[0] == 0
    unlink = pathlib.Path.unlink
    stuck = out / "clip.mp4_preview" / "clip_00000.20s.jpg"

    def refuse(self, *a, **k):
        if self == stuck:
            raise PermissionError(13, "Permission denied", str(self))
        return unlink(self, *a, **k)

    monkeypatch.setattr(pathlib.Path, "unlink", refuse)
    code, err = _run(capsys, src / "clip.mp4", "-o", out, "--overwrite", "--preview", "0.25")
    assert code == 0
    assert err.splitlines()[0] == (f"faceveil: warning: {src / 'clip.mp4'}: old still not removed: {stuck}: "
                                   "Permission denied"), err
    assert sorted(p.name for p in stuck.parent.iterdir()) == [f"clip_00000.{s}s.jpg" for s in ("00", "20", "30",
                                                                                                "50", "80")]


_KILLED_IN_PUBLISH = """
import os, sys
from faceveil.cli import main
from faceveil.video import job

moves, real_publish, real_replace = int(sys.argv[1]), job._Stills.publish, os.replace


def publish(self, *args):  # dies as SIGKILL would: after `moves` of publish's renames, or after all of them
    done = [0]

    def replace(a, b):
        if done[0] == moves:
            os._exit(137)
        done[0] += 1
        real_replace(a, b)

    os.replace = replace
    real_publish(self, *args)
    os._exit(137)


if moves == -2:  # dies once the video has its name, before its new record is written
    job.write_record = lambda *a, **k: os._exit(137)
else:
    job._Stills.publish = publish
main(["anonymize", *sys.argv[2:]])
"""


def _killed_rerun(tmp_path, capsys, moves: int, *other) -> tuple[Path, Path, Path, Path, dict]:
    """A 6-frame clip anonymized with --preview stills into out/clip.mp4, then run again (--overwrite, ``other``
    settings) in a child process that dies as SIGKILL would where ``moves`` says (_KILLED_IN_PUBLISH). Returns the
    input clip, the video, its record, its stills folder and their bytes after the first run."""
    import subprocess
    import sys

    rng = np.random.default_rng(9)
    src = tmp_path / "in"
    src.mkdir()
    write_clip(src / "clip.mp4", [rng.integers(0, 256, (48, 64, 3), np.uint8) for _ in range(6)], FPS, audio=False)
    out = tmp_path / "out"
    video, record, stills = out / "clip.mp4", out / ".faceveil" / "clip.mp4.tracks.json", out / "clip.mp4_preview"
    assert _run(capsys, src / "clip.mp4", "-o", video, "--preview", "0.1")[0] == 0
    before = {p: p.read_bytes() for p in [video, record, *stills.iterdir()]}
    assert len(before) == 2 + 5
    proc = subprocess.run([sys.executable, "-c", _KILLED_IN_PUBLISH, str(moves), str(src / "clip.mp4"), "-o",
                           str(video), "--preview", "0.1", *other, "--overwrite", "-q"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 137, proc.stderr
    return src / "clip.mp4", video, record, stills, before


@pytest.mark.parametrize("moves", [1, 3, -1], ids=["record-aside", "one-still-placed", "all-moved"])
def test_a_run_killed_before_its_video_has_its_name_leaves_the_earlier_video_its_record_and_stills(
        tmp_path, capsys, moves):
    """A run killed (SIGKILL) after its earlier track record was set aside and its stills moved into place, before
    its video had its name, left the earlier video without its record (the next run's sweep removed it with the
    temporary folder: a resume refused the video, the review flagged it) and beside this run's stills. The moves are
    journaled: the sweep puts the record and the stills back as they were, byte for byte, and the resume takes
    the video as done."""
    clip, video, record, stills, before = _killed_rerun(tmp_path, capsys, moves, "-m", "pixelate")
    assert not record.exists() and video.read_bytes() == before[video]  # the state the kill left

    code, err = _run(capsys, clip, "-o", video, "--preview", "0.1", "--skip-existing")
    assert code == 0 and "1 existing output left as it was" in err, err
    assert {p: p.read_bytes() for p in [video, record, *stills.iterdir()]} == before
    assert not [p for p in video.parent.iterdir() if ".faceveil." in p.name]  # no temporary left


def test_a_run_killed_after_its_video_has_its_name_leaves_no_earlier_record_beside_it(tmp_path, capsys):
    """The other side of the journal: killed once the new video had its name, before its record was written, the
    sweep must not put the earlier record back beside it (another render's boxes and settings, which a resume would
    take for checked and the review would show): the new video stands without a record, and a resume refuses it."""
    clip, video, record, stills, before = _killed_rerun(tmp_path, capsys, -2, "--crf", "30")
    names = sorted(p.name for p in stills.iterdir())
    new = video.read_bytes()
    assert new != before[video]
    code, err = _run(capsys, clip, "-o", video, "--crf", "30", "--preview", "0.1", "--skip-existing")
    assert code == 2 and "output exists with no record of its settings" in err, err
    assert not record.exists() and video.read_bytes() == new
    assert sorted(p.name for p in stills.iterdir()) == names  # this run's, in place with its video
    assert not [p for p in video.parent.iterdir() if ".faceveil." in p.name]  # no temporary left
