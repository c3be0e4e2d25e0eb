"""Dataset label readers and writers: exact round trips, line-numbered errors, refused paths."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceveil.io.labels import (
    ImageLabels, LabelError, LabelSet, read_coco, read_labels, read_voc, read_wider, read_yolo,
    resolve_image, split_missing, write_coco, write_wider, write_yolo,
)

from conftest import shared_path

WIDER_TEXT = (
    "a/one.jpg\n2\n"
    "10 20 30 40 1 0 0 0 2 0 \n"
    "5.5 6 7.25 8 0 1 1 0 0 1 \n"
    "a/empty.jpg\n0\n0 0 0 0 0 0 0 0 0 0 \n"
    "b/two.png\n1\n1 2 3 4 0 0 0 1 0 0 \n"
)


def _sizes(tmp_path: Path, names: dict[str, tuple[int, int]]) -> Path:
    root = tmp_path / "images"
    for rel, (w, h) in names.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (w, h), (90, 90, 90)).save(p)
    return root


def facemask_subset(tmp_path: Path, n: int = 6) -> tuple[Path, LabelSet]:
    """The first n facemask images (copied) and their VOC labels."""
    src = shared_path("facemask")
    root = tmp_path / "fm" / "images"
    root.mkdir(parents=True)
    voc = read_voc(src / "annotations")
    voc.images = voc.images[:n]
    for im in voc.images:
        (root / im.path).write_bytes((src / "images" / im.path).read_bytes())
    return root, voc


# --- WIDER -------------------------------------------------------------------

@pytest.mark.parametrize("rel", ["widerface-val/ground_truth/wider_face_val_bbx_gt.txt", "facemask/gt.txt"])
def test_wider_round_trip_is_byte_identical_on_real_files(rel, tmp_path):
    src = shared_path(*rel.split("/"))
    labels = read_wider(src)
    assert len(labels) > 400 and labels.num_boxes() > 3000
    write_wider(labels, tmp_path / "gt.txt")
    assert (tmp_path / "gt.txt").read_bytes() == src.read_bytes()


def test_wider_keeps_attributes_placeholder_floats_and_trailing_space(tmp_path):
    src = tmp_path / "gt.txt"
    src.write_text(WIDER_TEXT)
    labels = read_wider(src)
    assert [im.path for im in labels.images] == ["a/one.jpg", "a/empty.jpg", "b/two.png"]
    one = labels.images[0]
    np.testing.assert_array_equal(one.xyxy, [[10, 20, 40, 60], [5.5, 6, 12.75, 14]])
    assert one.extra[0]["attrs"] == [1, 0, 0, 0, 2, 0] and one.line == 1
    assert len(labels.images[1]) == 0 and labels.images[2].line == 8
    write_wider(labels, tmp_path / "out.txt")
    assert (tmp_path / "out.txt").read_text() == WIDER_TEXT


@pytest.mark.parametrize("text, line, cause", [
    ("a.jpg\nx\n", 2, "number of faces"),
    ("a.jpg\n2\n1 2 3 4\n", 4, "file ends inside the boxes"),
    ("a.jpg\n1\n1 2 3\n", 3, "expected 'x y w h'"),
    ("a.jpg\n1\n1 2 three 4\n", 3, "not a number"),
    ("a.jpg\n1\n1 2 -3 4\n", 3, "width and height"),
    ("a.jpg\n0\nb.jpg\n0\na.jpg\n0\n", 5, "listed twice"),
    ("a.jpg\n1\n1 2 3 4\nnot-an-image\n0\n", 4, "expected an image file name"),
])
def test_wider_errors_name_the_line(tmp_path, text, line, cause):
    p = tmp_path / "gt.txt"
    p.write_text(text)
    with pytest.raises(LabelError, match=cause) as err:
        read_wider(p)
    assert f"gt.txt:{line}:" in str(err.value)


@pytest.mark.parametrize("name", ["../secret.jpg", "a/../../secret.jpg", "/etc/secret.jpg", "C:\\x\\y.jpg",
                                  "..\\secret.jpg"])
def test_paths_escaping_the_images_root_are_refused(tmp_path, name):
    p = tmp_path / "gt.txt"
    p.write_text(f"ok.jpg\n0\n{name}\n0\n")
    with pytest.raises(LabelError, match="absolute|leaves the images folder") as err:
        read_wider(p)
    assert "gt.txt:3:" in str(err.value)
    doc = {"images": [{"id": 1, "file_name": name}], "annotations": [], "categories": []}
    (tmp_path / "c.json").write_text(json.dumps(doc))
    with pytest.raises(LabelError, match="absolute|leaves the images folder"):
        read_coco(tmp_path / "c.json")


def test_symlink_out_of_the_images_root_is_refused(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    (tmp_path / "secret.jpg").write_bytes(b"x")
    os.symlink(tmp_path / "secret.jpg", root / "link.jpg")
    with pytest.raises(LabelError, match="outside the images folder"):
        resolve_image(root, "link.jpg")


def test_missing_images_are_reported(tmp_path):
    root = _sizes(tmp_path, {"a/one.jpg": (50, 40)})
    p = tmp_path / "gt.txt"
    p.write_text("a/one.jpg\n0\na/gone.jpg\n1\n1 1 5 5\n")
    present, missing = split_missing(read_wider(p), root)
    assert [m.path for m in present] == ["a/one.jpg"] and [m.path for m in missing] == ["a/gone.jpg"]


# --- COCO --------------------------------------------------------------------

def test_coco_round_trip_from_real_labels(tmp_path):
    root, voc = facemask_subset(tmp_path)
    write_coco(voc, tmp_path / "c.json")
    coco = read_coco(tmp_path / "c.json")
    assert [im.path for im in coco.images] == [im.path for im in voc.images]
    for a, b in zip(coco.images, voc.images):
        np.testing.assert_array_equal(a.xywh, b.xywh)
        assert a.classes == b.classes and a.size == b.size
    write_coco(coco, tmp_path / "c2.json")
    assert (tmp_path / "c2.json").read_bytes() == (tmp_path / "c.json").read_bytes()


def test_coco_keeps_every_field(tmp_path):
    doc = {
        "info": {"year": 2020}, "licenses": [{"id": 3, "name": "x"}],
        "images": [{"id": 7, "file_name": "a/b.jpg", "width": 64, "height": 48, "license": 3},
                   {"id": 9, "file_name": "c.jpg", "width": 10, "height": 10}],
        "annotations": [{"id": 100, "image_id": 7, "category_id": 2, "bbox": [1, 2.5, 10, 12], "area": 120,
                         "iscrowd": 0, "segmentation": [[1, 2, 3, 4]], "attributes": {"occluded": True}},
                        {"id": 101, "image_id": 9, "bbox": [0, 0, 2, 2]}],
        "categories": [{"id": 2, "name": "face", "supercategory": "person"}],
    }
    src = tmp_path / "in.json"
    src.write_text(json.dumps(doc, indent=2))
    labels = read_coco(src)
    np.testing.assert_array_equal(labels.images[0].xyxy, [[1, 2.5, 11, 14.5]])
    assert labels.images[0].classes == ["face"] and len(labels.images[1]) == 1
    write_coco(labels, tmp_path / "out.json")
    assert json.loads((tmp_path / "out.json").read_text()) == doc


@pytest.mark.parametrize("doc, cause", [
    ('{"images": [}', r"in\.json:1: invalid JSON"),
    ('{\n"images": [\n{"id": 1, "file_name": "a.jpg"}\n],\n"annotations": [{"image_id": 2, "bbox": [0,0,1,1]}]}',
     r"annotations\[0\]: image_id 2 is not in 'images'"),
    ('{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 1, "bbox": [0,0,1]}]}',
     r"annotations\[0\]: bbox must be"),
    ('{"annotations": []}', "not a COCO file"),
    ('{\n\n"images": [{"id": 1 "file_name": "a.jpg"}]}', r"in\.json:3: invalid JSON"),
])
def test_coco_errors(tmp_path, doc, cause):
    (tmp_path / "in.json").write_text(doc)
    with pytest.raises(LabelError, match=cause):
        read_coco(tmp_path / "in.json")


# --- YOLO --------------------------------------------------------------------

def test_yolo_round_trip_from_real_labels(tmp_path):
    root, voc = facemask_subset(tmp_path)
    write_yolo(voc, tmp_path / "fm" / "labels")
    yolo = read_yolo(tmp_path / "fm" / "labels", root)
    assert [im.path for im in yolo.images] == [im.path for im in voc.images]
    for a, b in zip(yolo.images, voc.images):
        # 6 decimals of a normalised coordinate: well under a thousandth of a pixel here
        np.testing.assert_allclose(a.xywh, b.xywh, atol=2e-3)
        assert a.classes == b.classes
    write_yolo(yolo, tmp_path / "again")
    for f in (tmp_path / "fm" / "labels").rglob("*.txt"):
        assert (tmp_path / "again" / f.name).read_bytes() == f.read_bytes()


def test_yolo_background_images_and_orphan_labels(tmp_path):
    root = _sizes(tmp_path, {"x/a.jpg": (200, 100), "b.png": (50, 50)})
    lab = tmp_path / "labels"
    (lab / "x").mkdir(parents=True)
    (lab / "x" / "a.txt").write_text("0 0.5 0.5 0.2 0.4\n1 0.1 0.1 0.1 0.1\n")
    (lab / "gone.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    labels = read_yolo(lab, root)
    by = {im.path: im for im in labels.images}
    np.testing.assert_allclose(by["x/a.jpg"].xyxy[0], [80, 30, 120, 70])
    assert len(by["b.png"]) == 0 and not by["b.png"].info["label_file"]
    assert [m.path for m in split_missing(labels, root)[1]] == ["gone.jpg"]
    write_yolo(labels, tmp_path / "out")
    assert (tmp_path / "out" / "x" / "a.txt").read_text() == (lab / "x" / "a.txt").read_text().replace(
        "0.5 0.5 0.2 0.4", "0.500000 0.500000 0.200000 0.400000").replace("0.1 0.1 0.1 0.1",
                                                                            "0.100000 0.100000 0.100000 0.100000")
    assert not (tmp_path / "out" / "b.txt").exists()


def test_yolo_class_ids_written_as_floats_are_read_as_ultralytics_reads_them(tmp_path):
    """"0.0 cx cy w h" (converters that write every column as a float) was refused as 'not a number', so the dataset
    could not be anonymized or evaluated at all; Ultralytics reads the file as floats and casts the class."""
    root = _sizes(tmp_path, {"a.jpg": (200, 100)})
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("0.0 0.5 0.5 0.2 0.4\n1.000000 0.1 0.1 0.1 0.1\n")
    (tmp_path / "labels" / "classes.txt").write_text("face\nhand\n")
    im = read_yolo(tmp_path / "labels", root).images[0]
    assert im.classes == ["face", "hand"] and [ex["cls"] for ex in im.extra] == [0, 1]
    np.testing.assert_allclose(im.xyxy[0], [80, 30, 120, 70])


@pytest.mark.parametrize("line, cause", [("0 0.5 0.5 0.2", "expected 'class cx cy w h'"),
                                         ("face 0.5 0.5 0.2 0.2", "not a number"),
                                         ("0.5 0.5 0.5 0.2 0.2", "class id 0.5 is not a whole number"),
                                         ("0 0.1 0.2 0.3 0.4 0.5 0.6", "polygons")])
def test_yolo_errors_name_the_line(tmp_path, line, cause):
    root = _sizes(tmp_path, {"a.jpg": (20, 20)})
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text(f"0 0.5 0.5 0.1 0.1\n\n{line}\n")
    with pytest.raises(LabelError, match=cause) as err:
        read_yolo(tmp_path / "labels", root)
    assert "a.txt:3:" in str(err.value)


# --- VOC ---------------------------------------------------------------------

def test_voc_matches_the_wider_copy_of_facemask():
    voc = read_voc(shared_path("facemask", "annotations"))
    wider = {im.path: im for im in read_wider(shared_path("facemask", "gt.txt")).images}
    assert len(voc) == len(wider) == 700
    for im in voc.images:
        np.testing.assert_array_equal(im.xywh, wider[im.path].xywh)
    assert set(voc.classes) == {"with_mask", "without_mask", "mask_weared_incorrect"}


def test_voc_bad_xml_names_the_line(tmp_path):
    (tmp_path / "a.xml").write_text("<annotation>\n<filename>a.jpg</filename>\n<object>\n</annotation>\n")
    with pytest.raises(LabelError, match=r"a\.xml:4: invalid XML"):
        read_voc(tmp_path)


def test_voc_in_its_declared_encoding_and_coco_given_another_format(tmp_path):
    """A VOC file declared ISO-8859-1 (LabelImg on some systems) was refused as 'not UTF-8 text': read in its own
    encoding now. --format coco given a WIDER gt.txt said 'invalid JSON' (exit 1): bad usage now, naming the fix."""
    from faceveil.errors import UsageError

    (tmp_path / "voc").mkdir()
    (tmp_path / "voc" / "a.xml").write_bytes('<?xml version="1.0" encoding="ISO-8859-1"?>\n<annotation><filename>'
                                             'caf\xe9.jpg</filename><object><name>visage</name><bndbox><xmin>1'
                                             '</xmin><ymin>2</ymin><xmax>5</xmax><ymax>8</ymax></bndbox></object>'
                                             '</annotation>\n'.encode("latin-1"))
    voc = read_voc(tmp_path / "voc")
    assert voc.images[0].path == "caf\xe9.jpg" and voc.images[0].xywh.tolist() == [[1, 2, 4, 6]]
    (tmp_path / "gt.txt").write_text(WIDER_TEXT)
    with pytest.raises(UsageError, match=r"gt\.txt: not JSON, so not COCO labels .*--format wider, yolo or voc"):
        read_coco(tmp_path / "gt.txt")


def test_an_empty_coco_file_is_named_empty(tmp_path, capsys):
    """An empty (or blank, BOM only) faces.json was 'not JSON, so not COCO labels (--format coco); for WIDER, YOLO or
    VOC labels give --format wider, yolo or voc', exit 2: as if the user had picked the wrong format."""
    from faceveil.cli import main

    (tmp_path / "images").mkdir()
    for text in (b"", b"\xef\xbb\xbf \r\n"):
        (tmp_path / "faces.json").write_bytes(text)
        with pytest.raises(LabelError, match=r"faces\.json: empty file: no COCO labels in it"):
            read_coco(tmp_path / "faces.json")
        rc = main(["dataset", "anonymize", "--format", "coco", "--images", str(tmp_path / "images"), "--labels",
                   str(tmp_path / "faces.json"), "-o", str(tmp_path.parent / f"{tmp_path.name}-out"), "-q"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 1 and err == [f"faceveil: error: {tmp_path / 'faces.json'}: empty file: no COCO labels in it"]


def test_read_labels_dispatch_and_in_memory_sets(tmp_path):
    ls = LabelSet("wider", [ImageLabels("p.jpg", [[0, 0, 4, 4]])])
    write_wider(ls, tmp_path / "w.txt")
    assert read_labels(tmp_path / "w.txt", "wider").images[0].path == "p.jpg"
    assert read_labels(tmp_path / "w.txt").images[0].path == "p.jpg"  # the format guessed from the name
    with pytest.raises(Exception, match="unknown label format"):
        read_labels(tmp_path / "w.txt", "kitti")
