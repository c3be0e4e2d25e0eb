"""The one label layer (faceveil.io.labels): read -> write -> read gives the same labels in every format,
faces come out as Detections with their ignore flags, and eval, train and dataset mode all read through it."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceveil.detections import Detections
from faceveil.errors import UsageError
from faceveil.io.labels import (
    LabelError, LabelSet, read_coco, read_eval_labels, read_labels, read_voc, read_wider, read_yolo, write_coco,
    write_voc, write_wider, write_yolo,
)

from conftest import shared_path


def assert_same(a: LabelSet, b: LabelSet) -> None:
    assert a.format == b.format
    assert list(a) == list(b)
    for x, y in zip(a.images, b.images):
        assert x.path == y.path
        assert x.xywh.tolist() == y.xywh.tolist()  # exact, float64
        assert x.classes == y.classes
        assert x.ignore.tolist() == y.ignore.tolist()
        assert x.size == y.size
        assert isinstance(x.faces, Detections) and x.faces.source == "label"
        np.testing.assert_array_equal(x.faces.xyxy, y.faces.xyxy)


def _image(path: Path, size: tuple[int, int], orientation: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    Image.new("RGB", size, (90, 90, 90)).save(path, exif=exif)


def test_wider_round_trip(tmp_path):
    src = tmp_path / "gt.txt"
    src.write_text("a/one.jpg\n2\n10 20 30 40 1 0 0 0 2 0 \n5.5 6 7.25 8 0 1 1 1 0 1 \n"
                   "a/empty.jpg\n0\n0 0 0 0 0 0 0 0 0 0 \nb/two.png\n1\n1 2 3 4 0 0 0 0 0 0 \n")
    first = read_wider(src)
    assert first["a/one.jpg"].ignore.tolist() == [False, True]  # the "invalid" column
    assert first["a/one.jpg"].faces.xyxy.tolist() == [[10, 20, 40, 60], [5.5, 6, 12.75, 14]]
    write_wider(first, tmp_path / "out.txt")
    assert (tmp_path / "out.txt").read_bytes() == src.read_bytes()
    assert_same(first, read_labels(tmp_path / "out.txt"))


def test_coco_round_trip(tmp_path):
    doc = {"info": {"year": 2024}, "images": [{"id": 3, "file_name": "p.jpg", "width": 100, "height": 80},
                                               {"id": 4, "file_name": "sub/q.jpg"}],
           "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "face"}],
           "annotations": [{"id": 1, "image_id": 3, "category_id": 2, "bbox": [10, 20, 30, 40.5], "iscrowd": 0},
                           {"id": 2, "image_id": 3, "category_id": 1, "bbox": [0, 0, 99, 79]},
                           {"id": 3, "image_id": 4, "category_id": 2, "bbox": [1, 2, 3, 4], "iscrowd": 1}]}
    (tmp_path / "c.json").write_text(json.dumps(doc))
    first = read_coco(tmp_path / "c.json")
    assert first["p.jpg"].classes == ["face", "person"] and first["sub/q.jpg"].ignore.tolist() == [True]
    write_coco(first, tmp_path / "out.json")
    assert json.loads((tmp_path / "out.json").read_text()) == doc
    assert_same(first, read_labels(tmp_path / "out.json"))
    # eval measures the face category only
    faces = read_eval_labels(tmp_path / "out.json")
    assert faces["p.jpg"].faces.xyxy.tolist() == [[10, 20, 40, 60.5]] and faces["p.jpg"].classes == ["face"]


def test_yolo_round_trip_in_the_upright_frame(tmp_path):
    images = tmp_path / "images"
    _image(images / "p.jpg", (100, 80))
    _image(images / "sub" / "r.jpg", (60, 40), orientation=6)  # stored 60x40, shown 40x60
    _image(images / "bg.jpg", (10, 10))  # no label file: a background image
    labels = tmp_path / "labels"
    (labels / "sub").mkdir(parents=True)
    (labels / "p.txt").write_text("0 0.250000 0.500000 0.300000 0.500000\n1 0.040000 0.050000 0.080000 0.100000\n")
    (labels / "sub" / "r.txt").write_text("0 0.500000 0.500000 0.250000 0.500000\n")
    (labels / "classes.txt").write_text("face\nmask\n")
    first = read_yolo(labels, images)
    assert first["sub/r.jpg"].size == (40, 60)
    np.testing.assert_allclose(first["sub/r.jpg"].xywh, [[15, 15, 10, 30]])
    write_yolo(first, tmp_path / "again")
    for f in ("p.txt", "sub/r.txt", "classes.txt"):
        assert (tmp_path / "again" / f).read_bytes() == (labels / f).read_bytes()
    assert not (tmp_path / "again" / "bg.txt").exists()
    assert_same(first, read_labels(tmp_path / "again", "yolo", images))
    assert list(read_eval_labels(labels, "yolo", images)) == ["p.jpg", "sub/r.jpg"]  # labelled images only


def test_voc_round_trip(tmp_path):
    voc = tmp_path / "voc"
    (voc / "sub").mkdir(parents=True)
    (voc / "p.xml").write_text(
        "<annotation><filename>p.jpg</filename><size><width>100</width><height>80</height></size>"
        "<object><name>with_mask</name><difficult>0</difficult><bndbox><xmin>10</xmin><ymin>20</ymin>"
        "<xmax>40.3</xmax><ymax>60</ymax></bndbox></object>"
        "<object><name>face</name><difficult>1</difficult><bndbox><xmin>0.1</xmin><ymin>0</ymin>"
        "<xmax>8</xmax><ymax>8</ymax></bndbox></object></annotation>")
    (voc / "sub" / "q.xml").write_text("<annotation><filename>q.png</filename></annotation>")
    first = read_voc(voc)
    assert first["p.jpg"].ignore.tolist() == [False, True]
    write_voc(first, tmp_path / "out")
    again = read_labels(tmp_path / "out")
    assert_same(first, again)
    assert again["p.jpg"].extra[0]["bndbox"] == (10, 20, 40.3, 60)  # corners written back exactly


def test_voc_round_trip_on_real_labels(tmp_path):
    src = tmp_path / "annotations"
    src.mkdir()
    for f in sorted(shared_path("facemask", "annotations").glob("*.xml"))[:60]:
        (src / f.name).write_bytes(f.read_bytes())
    first = read_voc(src)
    write_voc(first, tmp_path / "out")
    assert_same(first, read_voc(tmp_path / "out"))
    assert len(first) == 60 and first.num_boxes() > 100


def test_voc_label_link_out_of_the_folder_is_refused(tmp_path):
    outside = tmp_path / "elsewhere.xml"
    outside.write_text("<annotation><filename>p.jpg</filename></annotation>")
    voc = tmp_path / "voc"
    voc.mkdir()
    (voc / "p.xml").symlink_to(outside)
    with pytest.raises(LabelError, match="outside the labels folder"):
        read_labels(voc)


def test_the_old_label_stacks_are_gone():
    for name in ("faceveil.io.datasets", "faceveil.eval.labels"):
        assert importlib.util.find_spec(name) is None, name
    import faceveil.eval.widerface as widerface
    assert not hasattr(widerface, "read_bbx_gt")


def test_the_label_format_of_a_folder_is_guessed_from_its_sub_folders_and_any_case(tmp_path):
    """`eval leaks --labels ds/labels` (no --format) on Ultralytics' layout, labels/train/*.txt, or on a folder of
    .XML files said 'no .xml (VOC) or .txt (YOLO) label files in this folder': only the top level was looked at, in
    lower case, while the readers take both."""
    _image(tmp_path / "images" / "train" / "a.jpg", (200, 100))
    (tmp_path / "yolo" / "train").mkdir(parents=True)
    (tmp_path / "yolo" / "train" / "a.txt").write_text("0 0.5 0.5 0.2 0.4\n")
    (tmp_path / "voc").mkdir()
    (tmp_path / "voc" / "A.XML").write_text("<annotation><filename>train/a.jpg</filename><object><name>face</name>"
                                            "<bndbox><xmin>80</xmin><ymin>30</ymin><xmax>120</xmax><ymax>70</ymax>"
                                            "</bndbox></object></annotation>")
    for folder, fmt in (("yolo", "yolo"), ("voc", "voc")):
        labels = read_eval_labels(tmp_path / folder, None, tmp_path / "images")
        assert labels.format == fmt and [im.path for im in labels.images] == ["train/a.jpg"], folder
        np.testing.assert_allclose(labels.images[0].xyxy, [[80, 30, 120, 70]])
    (tmp_path / "none" / ".ipynb_checkpoints").mkdir(parents=True)
    (tmp_path / "none" / ".ipynb_checkpoints" / "a.txt").write_text("0 0.5 0.5 0.2 0.4\n")
    with pytest.raises(UsageError, match="no .xml"):  # a hidden folder's files are no labels
        read_labels(tmp_path / "none")


def test_a_yolo_line_of_the_wrong_length_is_told_what_it_looks_like(tmp_path):
    """Every YOLO line of other than 5 values was told "(segmentation polygons are not supported)": a line of 6 (a
    detector's predictions saved with their confidence) is no polygon, nor is a short line."""
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    Image.new("RGB", (40, 30)).save(tmp_path / "images" / "a.png")
    cases = {"0 0.5 0.5 0.1 0.1 0.93": " (a 6th value, a detector's confidence in YOLO predictions, is not a label: "
                                       "give the 5-value labels)",
             "0 0.4 0.4 0.6 0.4 0.6 0.6 0.4 0.6": " (segmentation polygons and keypoints are not supported)",
             "0 0.5 0.5": ""}
    for line, why in cases.items():
        (tmp_path / "labels" / "a.txt").write_text(line + "\n")
        with pytest.raises(LabelError) as exc:
            read_labels(tmp_path / "labels", "yolo", tmp_path / "images")
        n = len(line.split())
        assert str(exc.value) == f"{tmp_path / 'labels' / 'a.txt'}:1: expected 'class cx cy w h', got {n} values{why}"


def test_a_wider_name_line_that_is_no_image_is_quoted_short(tmp_path):
    """A COCO .json read as WIDER (eval leaks --format wider, train learnedblur) quoted its whole first line: the
    whole file, kilobytes on one line. The quote now stops after 57 characters."""
    doc = {"images": [{"id": i, "file_name": f"img{i}.jpg", "width": 64, "height": 48} for i in range(50)]}
    (tmp_path / "ann.json").write_text(json.dumps(doc))
    with pytest.raises(LabelError) as exc:
        read_wider(tmp_path / "ann.json")
    got = json.dumps(doc)[:57] + "..."
    assert str(exc.value) == f"{tmp_path / 'ann.json'}:1: expected an image file name, got {got!r}"
