"""Leak metric, over-anonymization, PR curve and label readers, on hand-made values."""
import json
import math

import numpy as np
import pytest
from PIL import Image

from faceveil.anonymize import Compositor, RegionParams
from faceveil.detections import Detections
from faceveil.io.labels import find_image, find_images, read_eval_labels
from faceveil.eval.leaks import (LeakMetric, PRCurve, anonymized_mask, box_coverage, match_detections,
                                 near_face_mask)


def boxes(*xyxy):
    return Detections.from_boxes(np.array(xyxy, np.float32).reshape(-1, 4), source="label")


def test_box_coverage_counts_pixel_centres():
    mask = np.zeros((10, 10), bool)
    mask[0:10, 0:3] = True  # columns 0, 1, 2
    cov, total = box_coverage(mask, np.array([[0, 0, 4, 5], [2.6, 0, 4, 2], [20, 20, 30, 30]]))
    assert total.tolist() == [20, 2, 0]
    assert cov[0] == pytest.approx(15 / 20)  # columns 0-2 of 0-3
    assert cov[1] == 0.0  # centres 3.5 only: column 2's centre 2.5 is left of 2.6
    assert math.isnan(cov[2])  # entirely outside the image


def test_leak_and_away_numbers_by_hand():
    # 20x20 image, two labelled faces: A 10x10 at (0,0), B 4x4 at (14,14) (under 10 px: bucket 0-10 only).
    labels = boxes([0, 0, 10, 10], [14, 14, 18, 18])
    anon = np.zeros((20, 20), bool)
    anon[0:10, 0:8] = True  # A: 80 of 100 pixels -> exactly 80 %: not leaked
    anon[19, 0:5] = True  # 5 pixels away from faces
    metric = LeakMetric(min_size=4, buckets=((4, 10), (10, math.inf)))
    item = metric.update(anon, labels)
    assert item.coverage.tolist() == [0.8, 0.0]
    assert item.leaked.tolist() == [False, True]
    # near-face area: A enlarged 1.6x -> [-3, 13) clipped to [0, 13): 169 px; B -> [12.8, 19.2): pixel
    # centres 13.5 .. 18.5, so 6x6 = 36 px (12.5 lies outside)
    near = near_face_mask(labels, (20, 20))
    assert near.sum() == 169 + 36
    assert item.away_pixels == 400 - 205
    assert item.away_anonymized == 5
    r = metric.compute()
    assert (r.faces, r.leaked, r.leak_rate) == (2, 1, 0.5)
    assert [(b["faces"], b["leaked"]) for b in r.buckets] == [(1, 1), (1, 0)]
    assert r.away_rate == pytest.approx(5 / 195)
    assert r.leaks == [{"image": "", "box": [14.0, 14.0, 18.0, 18.0], "coverage": 0.0, "size": 4.0}]


def test_just_under_coverage_leaks_and_min_size_and_ignore():
    labels = boxes([0, 0, 10, 10], [0, 10, 6, 16], [10, 0, 20, 10])
    anon = np.zeros((20, 20), bool)
    anon[0:10, 0:7] = True
    anon[0:9, 7] = True  # 79 of 100 pixels
    metric = LeakMetric()  # min_size 10: the 6 px face is outside the headline number
    metric.update(anon, labels, ignore=np.array([False, False, True]))
    r = metric.compute()
    assert (r.faces, r.leaked) == (1, 1)
    assert [b["faces"] for b in r.buckets] == [1, 1, 0, 0, 0]  # 6 px in 5-10, 10 px in 10-20; ignored face nowhere


def test_away_rate_pools_pixels_and_keeps_per_image_mean():
    m = LeakMetric()
    a = np.zeros((10, 10), bool)
    a[0, :] = True  # 10 of 100
    b = np.zeros((10, 30), bool)  # 0 of 300
    m.update(a, Detections.empty("label"))
    m.update(b, Detections.empty("label"))
    r = m.compute()
    assert r.away_rate == pytest.approx(10 / 400)
    assert r.away_rate_mean == pytest.approx((0.1 + 0.0) / 2)
    assert math.isnan(r.leak_rate) and r.faces == 0


def test_compositor_mask_is_what_counts():
    # a detection equal to the labelled box, an ellipse 1.3x: covers the box well enough
    label = boxes([20, 20, 60, 60])
    comp = Compositor(RegionParams("ellipse", 1.3, 0.0))
    m = LeakMetric()
    m.update(anonymized_mask(comp, label, (100, 100)), label)
    assert m.compute().leaked == 0
    # a detection a quarter shorter than the label, drawn as it is: 75 % < 80 % of the labelled box covered
    comp = Compositor(RegionParams("box", 1.0, 0.0))
    m = LeakMetric()
    item = m.update(anonymized_mask(comp, boxes([20, 20, 60, 50]), (100, 100)), label)
    assert item.coverage[0] == pytest.approx(0.75) and m.compute().leaked == 1
    # feathering adds weights below 1 outside the region; only weight >= 0.5 counts as anonymized
    comp = Compositor(RegionParams("box", 1.0, 0.5))
    mask = anonymized_mask(comp, label, (100, 100))
    weights = comp.mask(label, (100, 100))
    assert mask.sum() == (weights >= 0.5).sum() < (weights > 0).sum()


def test_match_detections_and_pr_curve():
    labels = boxes([0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 64, 4])
    ignore = np.array([False, False, True, False])  # third invalid; fourth too small (< 10 px)
    dets = Detections.from_boxes(
        [[0, 0, 10, 10], [0, 1, 10, 11], [40, 0, 50, 10], [100, 100, 110, 110], [20, 0, 30, 10], [60, 0, 64, 4]],
        np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4]),
    )
    status, taken = match_detections(dets, labels, ignore | np.array([False, False, False, True]))
    # 0: TP; 1: duplicate of a taken face -> FP; 2: on an invalid face -> ignored; 3: FP; 4: TP; 5: tiny -> ignored
    assert status.tolist() == [1, 0, -1, 0, 1, -1]
    pr = PRCurve()
    pr.update(dets, labels, ignore)
    r = pr.compute()
    assert r.positives == 2
    assert r.thresholds.tolist() == pytest.approx([0.9, 0.8, 0.6, 0.5])
    assert r.recall.tolist() == [0.5, 0.5, 0.5, 1.0]
    assert r.precision.tolist() == pytest.approx([1.0, 0.5, 1 / 3, 0.5])
    assert r.ap == pytest.approx(0.5 * 1.0 + 0.5 * 0.5)


def test_wider_reader_flags_invalid_and_skips_empty_rows(tmp_path):
    gt = tmp_path / "gt.txt"
    gt.write_text("a/1.jpg\n2\n10 20 30 40 0 0 0 0 0 0 \n5 5 4 4 2 0 0 1 0 0 \nb/2.jpg\n0\n0 0 0 0 0 0 0 0 0 0 \n"
                  "c/3.jpg\n1\n1 2 3 4 0 0 0 0 0 0\n")
    lab = read_eval_labels(gt)
    assert list(lab) == ["a/1.jpg", "b/2.jpg", "c/3.jpg"]
    assert lab["a/1.jpg"].faces.xyxy.tolist() == [[10, 20, 40, 60], [5, 5, 9, 9]]
    assert lab["a/1.jpg"].ignore.tolist() == [False, True]
    assert len(lab["b/2.jpg"].faces) == 0
    assert lab["c/3.jpg"].faces.xyxy.tolist() == [[1, 2, 4, 6]]
    assert lab["a/1.jpg"].faces.source == "label"


def test_voc_coco_yolo_readers_agree(tmp_path):
    voc = tmp_path / "voc"
    voc.mkdir()
    (voc / "p.xml").write_text(
        "<annotation><filename>p.jpg</filename>"
        "<object><name>face</name><difficult>0</difficult><bndbox><xmin>10</xmin><ymin>20</ymin>"
        "<xmax>40</xmax><ymax>60</ymax></bndbox></object>"
        "<object><name>face</name><difficult>1</difficult><bndbox><xmin>0</xmin><ymin>0</ymin>"
        "<xmax>8</xmax><ymax>8</ymax></bndbox></object></annotation>")
    coco = tmp_path / "c.json"
    coco.write_text(json.dumps({
        "images": [{"id": 7, "file_name": "p.jpg"}],
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "face"}],
        "annotations": [{"image_id": 7, "category_id": 2, "bbox": [10, 20, 30, 40], "iscrowd": 0},
                        {"image_id": 7, "category_id": 1, "bbox": [0, 0, 99, 99]},
                        {"image_id": 7, "category_id": 2, "bbox": [0, 0, 8, 8], "iscrowd": 1}]}))
    images = tmp_path / "img"
    images.mkdir()
    Image.new("RGB", (100, 80)).save(images / "p.jpg")
    yolo = tmp_path / "yolo"
    yolo.mkdir()
    (yolo / "p.txt").write_text("0 0.25 0.5 0.3 0.5\n0 0.04 0.05 0.08 0.1\n")
    a, b, c = read_eval_labels(voc), read_eval_labels(coco), read_eval_labels(yolo, images=images)
    for lab in (a, b, c):
        assert list(lab) == ["p.jpg"]
        np.testing.assert_allclose(lab["p.jpg"].faces.xyxy, [[10, 20, 40, 60], [0, 0, 8, 8]], atol=1e-4)
    assert a["p.jpg"].ignore.tolist() == b["p.jpg"].ignore.tolist() == [False, True]
    assert c["p.jpg"].ignore.tolist() == [False, False]
    assert find_image(images, "p.jpg") == images / "p.jpg"
    assert find_image(images, "p") == images / "p.jpg"


def test_bad_label_files_fail_with_the_file_name(tmp_path):
    from faceveil.errors import FaceveilError

    bad = tmp_path / "gt.txt"
    bad.write_text("a.jpg\nthree\n")
    with pytest.raises(FaceveilError, match="gt.txt"):
        read_eval_labels(bad)
    with pytest.raises(FaceveilError, match="missing"):
        read_eval_labels(tmp_path / "missing.json")


def test_eval_leaks_command_writes_results_plot_and_crops(tmp_path, astronaut, capsys):
    from faceveil.cli import main

    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(astronaut).save(images / "astro.png")
    # the real face, plus a "face" labelled on the empty sky at the top left that no detector will find
    (tmp_path / "gt.txt").write_text("astro.png\n2\n180 60 90 115 0 0 0 0 0 0\n10 10 40 40 0 0 0 0 0 0\n")
    out = tmp_path / "out"
    code = main(["eval", "leaks", "--images", str(images), "--labels", str(tmp_path / "gt.txt"), "-o", str(out), "-q",
                 "--detect", "fast"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "all >= 10 px                     2       1  50.00%" in printed
    doc = json.loads((out / "results.json").read_text())
    assert doc["result"]["faces"] == 2 and doc["result"]["leaked"] == 1
    assert doc["result"]["leaks"][0]["box"] == [10.0, 10.0, 50.0, 50.0]
    assert doc["detector"] == "multiscale" and doc["pr"]["positives"] == 2
    assert doc["pr"]["operating_point"] == {"recall": 0.5, "precision": 1.0}
    assert (out / "pr_curve.png").stat().st_size > 1000
    crops = list((out / "leaked").glob("*.png"))
    assert [c.name for c in crops] == ["astro.png_1_10_10_cov00.png"]  # the second labelled face


def test_eval_leaks_usage_errors(tmp_path, capsys):
    from faceveil.cli import main

    (tmp_path / "gt.txt").write_text("nothere.jpg\n1\n1 1 20 20 0 0 0 0 0 0\n")
    code = main(["eval", "leaks", "--images", str(tmp_path), "--labels", str(tmp_path / "gt.txt"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "none of the 1 labelled images" in err and "Traceback" not in err


def test_labels_in_a_format_not_read_say_which_formats_are(tmp_path, capsys):
    """A CSV of boxes was told "cannot tell the label format; give --format (wider|coco|yolo|voc)": no --format reads
    a CSV (and yolo/voc are folders). It now says CSV is not read and what is; a file of another name is pointed at
    --format wider or coco, the two formats that are files."""
    from faceveil.cli import main

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(b"")
    (tmp_path / "boxes.csv").write_text("image,x,y,w,h,label\na.png,1,1,20,20,face\n")
    (tmp_path / "gt.lst").write_text("a.png\n1\n1 1 20 20 0 0 0 0 0 0\n")
    read = "WIDER FACE .txt, COCO .json, or a folder of YOLO .txt or Pascal VOC .xml files"
    for name, line in [("boxes.csv", "CSV labels are not read; give " + read),
                       ("gt.lst", "cannot tell the label format from its name; give --format wider or coco "
                                  f"(faceveil reads {read})")]:
        code = main(["eval", "leaks", "--images", str(tmp_path / "in"), "--labels", str(tmp_path / name),
                     "-o", str(tmp_path / "out"), "-q"])
        assert (code, capsys.readouterr().err) == (2, f"faceveil: error: {tmp_path / name}: {line}\n")
    assert not (tmp_path / "out").exists()


def test_eval_leaks_detects_a_1bit_photo_as_anonymize_does(tmp_path, capsys):
    """A dithered 1-bit photo: anonymize smooths it for the detector (detection_view); eval did not and counted the
    face it hides as leaked."""
    from conftest import shared_path
    from faceveil.cli import main

    im = Image.open(shared_path("deepface-unit", "img10.jpg"))
    im.thumbnail((300, 300))
    images = tmp_path / "images"
    images.mkdir()
    im.convert("1").save(images / "bit.png")
    (tmp_path / "gt.txt").write_text("bit.png\n1\n50 72 100 135 0 0 0 0 0 0\n")
    assert main(["anonymize", str(images), "-o", str(tmp_path / "anon"), "-m", "blackout", "-q"]) == 0
    hidden = np.asarray(Image.open(tmp_path / "anon" / "bit.png").convert("L"))[72:207, 50:150] == 0
    assert hidden.mean() > 0.8  # anonymize hides the face
    out = tmp_path / "out"
    assert main(["eval", "leaks", "--images", str(images), "--labels", str(tmp_path / "gt.txt"), "-o", str(out),
                 "-q"]) == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["result"]["faces"] == 1 and doc["result"]["leaked"] == 0 and doc["pr"]["ap"] == 1.0


def test_find_image_matches_the_labels_relative_path_only(tmp_path):
    """Labels for a/x.jpg were scored on b/x.jpg (the first file of that stem anywhere under --images)."""
    images = tmp_path / "images"
    (images / "b").mkdir(parents=True)
    (images / "c").mkdir()
    Image.new("RGB", (8, 8)).save(images / "b" / "x.jpg")
    Image.new("RGB", (8, 8)).save(images / "c" / "y.PNG")
    assert find_image(images, "a/x.jpg") is None and find_image(images, "x.jpg") is None
    assert find_image(images, "b/x.jpg") == images / "b" / "x.jpg"
    assert find_image(images, "c/y.jpg") == find_image(images, "c/y") == images / "c" / "y.PNG"



def test_two_label_keys_of_one_photo_score_it_once(tmp_path, astronaut, capsys):
    """x.jpg and x.png both labelled beside one x.jpg: eval leaks scored the photo twice, once with x.png's faces
    (here a box where no face is: a leak of a face that is not there); now x.png counts as a missing image."""
    from faceveil.cli import main

    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(astronaut).save(images / "x.jpg")
    assert find_images(images, ["x.png", "x.jpg", "y"]) == ([("x.jpg", images / "x.jpg")], ["x.png", "y"])
    assert find_images(images, ["x.png", "x.gif"]) == ([("x.png", images / "x.jpg")], ["x.gif"])
    (tmp_path / "gt.txt").write_text("x.png\n1\n10 400 60 60 0 0 0 0 0 0\nx.jpg\n1\n190 70 70 100 0 0 0 0 0 0\n")
    out = tmp_path / "out"
    assert main(["eval", "leaks", "--images", str(images), "--labels", str(tmp_path / "gt.txt"), "-o", str(out),
                 "-q"]) == 1
    doc = json.loads((out / "results.json").read_text())
    assert (doc["evaluated"], doc["missing"], doc["result"]["faces"], doc["result"]["leaked"]) == (1, 1, 1, 0)
    assert "1 labelled image not found (left out of the results), e.g. x.png" in capsys.readouterr().err


def test_eval_leaks_names_a_folder_of_images_it_cannot_read(tmp_path, astronaut, capsys, monkeypatch):
    """A folder under --images that cannot be read (chmod 000) was a traceback at its first labelled image: now one
    error line naming it (its images not evaluated, exit 1; the rest evaluated); --images itself is bad usage."""
    from conftest import unreadable_folders
    from faceveil.cli import main

    images = tmp_path / "images"
    for sub in ("ok", "locked"):
        (images / sub).mkdir(parents=True)
        Image.fromarray(astronaut).save(images / sub / "astro.png")
    (tmp_path / "gt.txt").write_text("".join(f"{s}/astro.png\n1\n190 70 70 100 0 0 0 0 0 0\n"
                                             for s in ("ok", "locked")))
    unreadable_folders(monkeypatch, "locked")
    out = tmp_path / "out"
    argv = ["eval", "leaks", "--labels", str(tmp_path / "gt.txt"), "-q", "--detect", "fast", "--images"]
    assert main([*argv, str(images), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    line = f"{images / 'locked'}: cannot read the folder (Permission denied); 1 labelled image in it not evaluated"
    assert err.startswith(f"faceveil: error: {line}\nfaceveil: results.json") and "Traceback" not in err, err
    doc = json.loads((out / "results.json").read_text())
    assert (doc["evaluated"], doc["failed"], doc["result"]["faces"]) == (1, [line], 1)
    images.rename(tmp_path / "locked")
    assert main([*argv, str(tmp_path / "locked")]) == 2
    assert capsys.readouterr().err == f"faceveil: error: {tmp_path / 'locked'}: cannot read the folder (Permission " \
                                      "denied)\n"


def test_eval_leaks_labels_it_cannot_read_are_bad_usage(tmp_path, astronaut, capsys, monkeypatch):
    """--labels that cannot be read (chmod 000) exited 1, as an image that failed in the run; one in a folder that
    may not be entered was a traceback. As in `dataset anonymize`: exit 2, one line naming it, before any work."""
    import pathlib

    from conftest import unreadable_folders
    from faceveil.cli import main

    (tmp_path / "images").mkdir()
    Image.fromarray(astronaut).save(tmp_path / "images" / "astro.png")
    (tmp_path / "locked").mkdir()
    for gt in (tmp_path / "gt.txt", tmp_path / "locked" / "gt.txt"):
        gt.write_text("astro.png\n1\n190 70 70 100 0 0 0 0 0 0\n")
    real = pathlib.Path.read_bytes

    def read_bytes(self):
        if self == tmp_path / "gt.txt":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(pathlib.Path, "read_bytes", read_bytes)
    unreadable_folders(monkeypatch, "locked")
    out = tmp_path / "out"
    for gt in (tmp_path / "gt.txt", tmp_path / "locked" / "gt.txt"):
        assert main(["eval", "leaks", "--images", str(tmp_path / "images"), "--labels", str(gt), "-q",
                     "--detect", "fast", "-o", str(out)]) == 2
        why = "cannot read (Permission denied)" if gt.parent == tmp_path else \
            "a folder on the way to it cannot be entered (permission denied)"  # io.inputs.refuse_unreachable
        assert capsys.readouterr().err == f"faceveil: error: {gt}: {why}\n"
    assert not out.exists()


def test_leaked_crops_have_one_name_each_and_a_rerun_replaces_them(tmp_path, astronaut):
    """Two faces at one corner, a/g.png and a__g.png wrote one crop name; a rerun kept the earlier run's crops."""
    from faceveil.cli import main

    images = tmp_path / "images"
    (images / "a").mkdir(parents=True)
    for rel in ("g.png", "a/g.png", "a__g.png"):
        Image.fromarray(astronaut).save(images / rel)
    sky = "10 10 30 30 0 0 0 0 0 0\n"  # nothing to detect there: leaked
    gt = tmp_path / "gt.txt"
    gt.write_text(f"g.png\n2\n{sky}10.4 10.2 31 29 0 0 0 0 0 0\na/g.png\n1\n{sky}a__g.png\n1\n{sky}")
    out = tmp_path / "out"
    argv = ["eval", "leaks", "--images", str(images), "--labels", str(gt), "-o", str(out), "-q", "--detect", "fast"]
    assert main(argv) == 0
    crops = sorted(p.relative_to(out / "leaked").as_posix() for p in (out / "leaked").rglob("*.png"))
    assert crops == ["a/g.png_0_10_10_cov00.png", "a__g.png_0_10_10_cov00.png", "g.png_0_10_10_cov00.png",
                     "g.png_1_10_10_cov00.png"]
    (out / "leaked" / "notes.txt").write_text("mine")
    gt.write_text(f"g.png\n1\n{sky}")
    assert main(argv) == 0
    assert sorted(p.relative_to(out / "leaked").as_posix() for p in (out / "leaked").rglob("*")) == [
        "g.png_0_10_10_cov00.png", "notes.txt"]


def test_eval_messages_escape_control_characters_in_names(tmp_path, astronaut, capsys):
    """eval leaks' "no pixel in the image" warning and its error lines (and the other eval commands' error lines,
    cli.eval.report_errors) printed image names raw: a COCO file_name holding a newline printed a fake line."""
    from faceveil.cli import main
    from faceveil.cli.eval import report_errors

    images = tmp_path / "images"
    images.mkdir()
    fake = "\nfaceveil: 0 leaked"
    Image.fromarray(astronaut[:100, :100]).save(images / f"a{fake}.png")
    (images / f"b{fake}.png").write_bytes(b"not a png")
    coco = {"images": [{"id": i, "file_name": f"{n}{fake}.png", "width": 100, "height": 100}
                       for i, n in ((1, "a"), (2, "b"))],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [300, 300, 20, 20], "iscrowd": 0}],
            "categories": [{"id": 1, "name": "face"}]}
    (tmp_path / "l.json").write_text(json.dumps(coco))
    assert main(["eval", "leaks", "--images", str(images), "--labels", str(tmp_path / "l.json"), "-q",
                 "--detect", "fast"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert all(ln.startswith("faceveil: ") for ln in err), err
    assert any("e.g. a\\nfaceveil: 0 leaked.png [" in ln for ln in err), err
    assert any(ln.startswith(f"faceveil: error: {images}/b\\nfaceveil: 0 leaked.png: ") for ln in err), err
    assert report_errors([f"x{fake}.png: cannot decode image"], 1, 2) == 1
    assert capsys.readouterr().err.splitlines()[0] == "faceveil: error: x\\nfaceveil: 0 leaked.png: cannot decode image"


def test_pr_floor_above_the_detectors_cut_ends_the_curve_there(tmp_path, astronaut):
    """--pr-floor 0.95 was recorded, but the curve still ran down to the preset's 0.1."""
    from faceveil.cli import main

    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(astronaut).save(images / "astro.png")
    (tmp_path / "gt.txt").write_text("astro.png\n1\n180 60 90 115 0 0 0 0 0 0\n")
    for floor in ("0.05", "0.95"):
        out = tmp_path / floor
        assert main(["eval", "leaks", "--images", str(images), "--labels", str(tmp_path / "gt.txt"), "-o", str(out),
                     "-q", "--detect", "fast", "--pr-floor", floor]) == 0
        doc = json.loads((out / "results.json").read_text())
        assert doc["pr_floor"] == float(floor) and doc["result"]["leaked"] == 0  # the detections in use stay
        assert all(t >= float(floor) for t in doc["pr"]["thresholds"])
    assert doc["pr"]["thresholds"] == [] and doc["pr"]["ap"] == 0  # the face scores 0.93 < 0.95


def test_boxes_outside_the_image_and_zero_faces(tmp_path, astronaut, capsys):
    """A box with no pixel in the photo was 0 faces in the leak table but a face to find in the AP (AP 0.5 for a
    face found); with no face at all the AP line printed 0.000 and results.json held NaN (not JSON)."""
    from faceveil.cli import main

    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(astronaut).save(images / "astro.png")
    face, outside = "180 60 90 115 0 0 0 0 0 0\n", "-50 -50 40 40 0 0 0 0 0 0\n"
    for name, rows, ap in (("one", face + outside, "1.000"), ("none", outside, "-")):
        (tmp_path / f"{name}.txt").write_text(f"astro.png\n{rows.count(chr(10))}\n{rows}")
        out = tmp_path / name
        assert main(["eval", "leaks", "--images", str(images), "--labels", str(tmp_path / f"{name}.txt"), "-o",
                     str(out), "-q", "--detect", "fast"]) == 0
        std = capsys.readouterr()
        assert f"AP {ap};" in std.out and "1 labelled box with no pixel in the image left out" in std.err
        doc = json.loads((out / "results.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
        assert doc["outside"] == ["astro.png [-50.0, -50.0, -10.0, -10.0]"]
        assert doc["result"]["faces"] == doc["pr"]["positives"] == (name == "one")
    assert "recall -, precision 0.000" in std.out and doc["pr"]["ap"] is None


def test_eval_leaks_searches_a_transparent_photo_as_anonymize_does(tmp_path, astronaut, capsys):
    """A stencil (flat black, the face drawn by the alpha channel): anonymize finds it over white and hides it;
    eval read the colour channels only and counted the face it hides as leaked."""
    from faceveil.cli import main

    grey = np.asarray(Image.fromarray(astronaut).convert("L")).astype(int)
    rgba = np.dstack([np.zeros(grey.shape + (3,), np.uint8), (255 - grey).astype(np.uint8)])
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(rgba, "RGBA").save(images / "stencil.png")
    (tmp_path / "gt.txt").write_text("stencil.png\n1\n190 70 70 100 0 0 0 0 0 0\n")
    assert main(["anonymize", str(images), "-o", str(tmp_path / "anon"), "-q"]) == 0
    out = tmp_path / "out"
    assert main(["eval", "leaks", "--images", str(images), "--labels", str(tmp_path / "gt.txt"), "-o", str(out),
                 "-q"]) == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["result"]["faces"] == 1 and doc["result"]["leaked"] == 0


def test_an_empty_label_file_or_split_side_is_named_as_such(tmp_path, capsys):
    """An empty label file, or labels none of which fall on the --split side asked for, said 'none of the 0
    labelled images is in IMAGES', as if the photos were in another folder."""
    from faceveil.cli import main
    from faceveil.eval.splits import side

    (tmp_path / "images").mkdir()
    Image.new("RGB", (64, 48), (90, 90, 90)).save(tmp_path / "images" / "a.jpg")
    other = "tune" if side("a.jpg") == "held_out" else "held_out"
    gt = tmp_path / "gt.txt"
    gt.write_text("a.jpg\n1\n10 10 20 20 0 0 0 0 0 0\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    for labels, extra, cause in ((empty, [], "empty.txt: no labelled images in it"),
                                 (gt, ["--split", other], f"none of its 1 labelled image is on the '{other}' side")):
        rc = main(["eval", "leaks", "--images", str(tmp_path / "images"), "--labels", str(labels), "-q", *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and cause in err[0], err
