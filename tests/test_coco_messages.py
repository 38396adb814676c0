"""Messages that name the dataset's root flag: --voc12_root for a VOC run, --coco_root for --dataset coco14."""
import os
import types

import pytest
import torch

from advcam.errors import BadInputError
from advcam.utils import check_all_unreadable, dataset_root_words


def _args(**kw):
    base = dict(train_list="list.txt", cam_out_dir="out/cam")
    return types.SimpleNamespace(**{**base, **kw})


def test_voc_message_is_the_one_of_before():
    with pytest.raises(BadInputError) as e:
        check_all_unreadable({"bad": 4, "images": 0}, _args(voc12_root="/data/VOC2012"))
    assert str(e.value) == ("none of the 4 images to do of --train_list list.txt could be read (each is logged "
                            "above), so nothing was written to out/cam: check --voc12_root /data/VOC2012 and its "
                            "JPEGImages/")
    # an explicit --dataset voc12 reads the same
    words = dataset_root_words(_args(dataset="voc12", voc12_root="R", coco_root="C"))
    assert words == "--voc12_root R and its JPEGImages/"


def test_coco_message_names_the_coco_root(monkeypatch):
    monkeypatch.delenv("COCO_ROOT", raising=False)
    args = _args(dataset="coco14", coco_root="/data/coco2014", voc12_root="Dataset/VOC2012_SEG_AUG/")
    with pytest.raises(BadInputError) as e:
        check_all_unreadable({"bad": 3, "images": 0}, args)
    assert str(e.value) == ("none of the 3 images to do of --train_list list.txt could be read (each is logged "
                            "above), so nothing was written to out/cam: check --coco_root /data/coco2014 and its "
                            "train2014/ and val2014/")
    assert "voc12" not in str(e.value)
    # the root that the pass read from COCO_ROOT when --coco_root was not given
    monkeypatch.setenv("COCO_ROOT", "/env/coco")
    assert dataset_root_words(_args(dataset="coco14", coco_root=None)) == \
        "--coco_root /env/coco and its train2014/ and val2014/"


def test_no_error_when_something_was_read():
    check_all_unreadable({"bad": 3, "images": 1}, _args(dataset="coco14", coco_root="c"))
    check_all_unreadable({"bad": 0, "images": 0}, _args(dataset="coco14", coco_root="c"))  # nothing to do


@pytest.mark.slow
def test_obtain_cam_masking_on_unreadable_coco_images(tmp_path, monkeypatch):
    """AdvCAM on a toy COCO root whose every JPEG is damaged, --skip_bad_images True: the pass names --coco_root."""
    from advcam import obtain_cam_masking
    from advcam.nets.resnet50_cam import Net
    from advcam.tools.make_toy_coco import make_toy_coco

    monkeypatch.delenv("COCO_ROOT", raising=False)
    root = str(tmp_path / "coco")
    make_toy_coco(root, n_train=4, n_val=0, seed=1)
    for f in os.listdir(os.path.join(root, "train2014")):
        with open(os.path.join(root, "train2014", f), "wb") as fh:
            fh.write(b"not a jpeg")
    torch.manual_seed(0)
    os.makedirs(tmp_path / "sess")
    torch.save(Net(num_classes=80).state_dict(), tmp_path / "sess" / "cam.pth")
    with pytest.raises(BadInputError) as e:
        obtain_cam_masking.main(["--dataset", "coco14", "--coco_root", root, "--train_list",
                                 os.path.join(root, "train14.txt"), "--num_workers", "0", "--cam_weights_name",
                                 str(tmp_path / "sess" / "cam.pth"), "--cam_out_dir", str(tmp_path / "adv"),
                                 "--cam_scales", "1.0", "--adv_iter", "1", "--skip_bad_images", "True"])
    msg = str(e.value)
    assert msg.startswith("none of the ") and "could be read" in msg
    assert msg.endswith(f"check --coco_root {root} and its train2014/ and val2014/") and "voc12_root" not in msg
