import os
import random

from faceveil.eval.splits import side, split

from conftest import shared_path


def test_a_photo_keeps_its_side_whatever_else_is_loaded():
    names = [f"img_{i}.jpg" for i in range(200)]
    tune, held = split(names)
    shuffled = names[:]
    random.Random(1).shuffle(shuffled)
    t2, h2 = split(shuffled[:50])
    assert set(t2) <= set(tune) and set(h2) <= set(held)
    assert 70 <= len(tune) <= 130  # about half
    assert side("a/b/img_3.png") == side("img_3.jpg")  # folders and extension do not move a photo
    assert split(names, seed=1) != (tune, held)


def test_the_facemask_split_is_fixed_once():
    images = shared_path("facemask", "images")
    tune, held = split(sorted(os.listdir(images)))
    assert (len(tune), len(held)) == (330, 370)
    assert tune[:2] == sorted(tune)[:2]
