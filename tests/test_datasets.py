"""The data layer (advcam.datasets): the VOC instance gives today's items, the COCO instance reads a toy COCO root,
the metrics follow the dataset's class count, and the pipeline runs end to end with --dataset coco14."""
import os

import numpy as np
import pytest
import torch

from advcam import coco14, obtain_cam_masking, run_sample
from advcam.datasets import (
    COCO14,
    VOC12,
    ClassificationDataset,
    ImageDatasetMSF,
    dataset_of,
    get_dataset,
)
from advcam.errors import BadInputError, MissingInputError
from advcam.evaluation import label_confusion
from advcam.io import load_cam_npy, save_png
from advcam.metrics import mean_iou
from advcam.voc12.dataloader import (
    VOC12ClassificationDataset,
    VOC12ImageDatasetMSF,
    get_cls_labels,
    load_image,
    load_img_name_list,
    load_seg_label,
)


# ----------------------------------------------------------------------------------------------- VOC instance
def test_voc_instance_gives_the_files_and_items_of_before(tiny_voc):
    data = get_dataset("voc12", tiny_voc)
    assert (data.name, data.num_classes, data.num_seg_classes, data.ignore_label) == ("voc12", 20, 21, 255)
    names = load_img_name_list("train.txt", tiny_voc)
    assert data.read_list("train.txt") == names
    name = names[0]
    assert data.image_path(name) == os.path.join(tiny_voc, "JPEGImages", name + ".jpg")
    assert data.gt_path(name) == os.path.join(tiny_voc, "SegmentationClass", name + ".png")
    np.testing.assert_array_equal(data.load_image(name), load_image(tiny_voc, name))
    np.testing.assert_array_equal(data.load_seg_label(name), load_seg_label(tiny_voc, name))
    np.testing.assert_array_equal(data.cls_labels(names), get_cls_labels(tiny_voc, names))
    # the thin VOC classes are the generic datasets over this instance: the same items
    old = VOC12ClassificationDataset("train.txt", tiny_voc, crop_size=32, crop_method="random", seed=3, hor_flip=True)
    new = ClassificationDataset(data, names, crop_size=32, crop_method="random", seed=3, hor_flip=True)
    assert len(old) == len(new) == len(names)
    for i in range(len(names)):
        a, b = old[i], new[i]
        assert a["name"] == b["name"]
        np.testing.assert_array_equal(a["img"], b["img"])
        assert torch.equal(a["label"], b["label"])
    a, b = VOC12ImageDatasetMSF(None, tiny_voc, (1.0, 0.5), names=names)[1], ImageDatasetMSF(data, names, (1.0, 0.5))[1]
    assert a["size"] == b["size"] and all(torch.equal(x, y) for x, y in zip(a["img"], b["img"], strict=True))
    # a Namespace without --dataset is VOC (every caller from before this layer)
    assert isinstance(dataset_of(type("A", (), {"voc12_root": tiny_voc})()), VOC12)


def test_unknown_dataset_is_one_line():
    with pytest.raises(BadInputError, match="--dataset nope: expected one of voc12, coco14"):
        get_dataset("nope", "/x")


# ----------------------------------------------------------------------------------------------- metrics
def test_81_class_confusion_on_hand_made_maps(tmp_path):
    """Two 2x3 COCO label maps; IoU per class counted by hand. Labels above 20 are classes, not errors."""
    root = tmp_path / "coco"
    for split in coco14.SPLITS:
        (root / split).mkdir(parents=True)
    gts = {"000000000001": [[0, 0, 80], [80, 41, 255]], "000000000002": [[12, 12, 0], [0, 0, 0]]}
    preds = {"000000000001": [[0, 80, 80], [80, 41, 41]], "000000000002": [[12, 0, 0], [0, 0, 255]]}
    for name in gts:
        (root / "train2014" / f"COCO_train2014_{name}.jpg").write_bytes(b"")  # only its place is read
        save_png(str(root / "mask" / "train2014" / f"{name}.png"), np.array(gts[name], np.uint8))
        save_png(str(tmp_path / "pred" / f"{name}.png"), np.array(preds[name], np.uint8))
    data = COCO14(str(root))
    conf = label_confusion(data, list(gts), str(tmp_path / "pred"))
    assert conf.shape == (81, 81)
    # rows gt, columns pred. 0: gt 6, pred 6 (pred 255 counts as 0), hit 5; 12: gt 2, pred 1, hit 1;
    # 41: gt 1, pred 1 (the other pred-41 pixel lies on ignore), hit 1; 80: gt 2, pred 3, hit 2
    assert conf[0, 0] == 5 and conf[0, 80] == 1 and conf[12, 12] == 1 and conf[12, 0] == 1
    assert conf[41, 41] == 1 and conf[80, 80] == 2 and conf.sum() == 11
    ious = {0: 5 / (6 + 6 - 5), 12: 1 / (2 + 1 - 1), 41: 1 / (1 + 1 - 1), 80: 2 / (2 + 3 - 2)}
    assert mean_iou(conf) == pytest.approx(np.mean(list(ious.values())))
    # a VOC root reading the same maps would refuse label 80
    with pytest.raises(BadInputError, match="not a class of the dataset \\(0-20\\)"):
        from advcam.evaluation import load_prediction
        load_prediction(str(tmp_path / "pred"), "000000000001")


# ----------------------------------------------------------------------------------------------- COCO instance
def test_coco_items_labels_and_paths(toy_coco, tmp_path):
    data = get_dataset("coco14", toy_coco, cache_dir=str(tmp_path))
    assert (data.num_classes, data.num_seg_classes, data.root_flag) == (80, 81, "--coco_root")
    train = data.read_list(os.path.join(toy_coco, "train14.txt"))
    val = data.read_list(os.path.join(toy_coco, "val14.txt"))
    assert len(train) == 8 and len(val) == 4 and all(len(n) == 12 and n.isdigit() for n in train + val)
    t, v = train[1], val[0]
    assert data.image_path(t) == os.path.join(toy_coco, "train2014", f"COCO_train2014_{t}.jpg")
    assert data.image_path(v) == os.path.join(toy_coco, "val2014", f"COCO_val2014_{v}.jpg")
    assert data.gt_path(v) == os.path.join(toy_coco, "mask", "val2014", f"{v}.png")
    img, gt = data.load_image(t), data.load_seg_label(t)
    assert img.shape[2] == 3 and img.dtype == np.uint8 and gt.shape == img.shape[:2]
    # labels: the categories of every annotation of the image (crowd included), mapped 1..90 -> index 0..79
    import json
    for split, names in (("train2014", train), ("val2014", val)):
        with open(coco14.json_path(toy_coco, split)) as f:
            js = json.load(f)
        want = {n: np.zeros(80, np.float32) for n in names}
        for a in js["annotations"]:
            want[coco14.id_str(a["image_id"])][coco14.CAT_ID_TO_LABEL[a["category_id"]] - 1] = 1
        np.testing.assert_array_equal(data.cls_labels(names), np.stack([want[n] for n in names]))
    assert os.path.isfile(tmp_path / "coco14_cls_labels_train2014.npy")  # built once, cached
    # every pixel label of a mask is a class the image-level label has (crowd can add labels without pixels)
    lab = data.cls_labels(train)
    for n, row in zip(train, lab, strict=True):
        present = set(np.unique(data.load_seg_label(n)).tolist()) - {0}
        assert present <= {int(k) + 1 for k in np.nonzero(row)[0]}
    ds = ClassificationDataset(data, train, crop_size=64, crop_method="random", seed=0)
    item = ds[1]
    assert item["name"] == t and item["img"].shape == (3, 64, 64) and item["label"].shape == (80,)
    msf = ImageDatasetMSF(data, val, (1.0, 0.5))[0]
    assert msf["size"] == data.load_image(v).shape[:2] and msf["img"][0].shape[:2] == (2, 3)
    # eval split names: the shipped list (its first line 000000391895)
    assert len(data.eval_names("val")) == 40504 and data.eval_names("val")[0] == "000000391895"
    with pytest.raises(BadInputError, match="has no label in"):
        data.cls_labels(["000000999999"])
    with pytest.raises(MissingInputError, match="--chainer_eval_set nope"):
        data.eval_names("nope")


def test_coco_flags_defaults_and_refusals(toy_coco, tmp_path):
    p = run_sample.build_parser()
    argv = ["--dataset", "coco14", "--coco_root", toy_coco]
    args = p.parse_args(argv)
    from advcam.datasets import apply_dataset_defaults
    apply_dataset_defaults(args, p, {"train_list": "train", "val_list": "val", "infer_list": "infer"}, argv)
    assert (args.train_list, args.val_list, args.infer_list) == ("coco14/train14.txt", "coco14/val14.txt",
                                                                 "coco14/train14.txt")
    assert (args.conf_fg_thres, args.conf_bg_thres) == (0.35, 0.10)  # ReCAM's COCO settings
    argv = ["--dataset", "coco14", "--train_list", "voc12/train_aug.txt", "--conf_bg_thres=0.15"]
    given = p.parse_args(argv)
    apply_dataset_defaults(given, p, {"train_list": "train"}, argv)
    assert (given.train_list, given.conf_bg_thres) == ("voc12/train_aug.txt", 0.15)  # given flags are kept
    assert isinstance(dataset_of(args), COCO14)
    with pytest.raises(SystemExit) as e:
        run_sample.main(["--dataset", "coco14", "--coco_root", toy_coco, "--eval_ins_seg_pass", "True"])
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        run_sample.main(["--dataset", "coco14", "--coco_root", str(tmp_path / "none"), "--eval_cam_pass", "True"])


def test_coco_pipeline_end_to_end(toy_coco, tmp_path, monkeypatch):
    """train_cam from scratch (80 classes), make_cam, eval_cam (81), cam_to_ir_label, train_irn (Lite0),
    make_sem_seg and eval_sem_seg on the toy COCO root."""
    monkeypatch.chdir(tmp_path)
    common = ["--dataset", "coco14", "--coco_root", toy_coco, "--train_list", os.path.join(toy_coco, "train14.txt"),
              "--val_list", os.path.join(toy_coco, "val14.txt"), "--infer_list", os.path.join(toy_coco, "train14.txt"),
              "--chainer_eval_set", os.path.join(toy_coco, "train14.txt"), "--num_workers", "0", "--seed", "0",
              "--cam_weights_name", str(tmp_path / "sess" / "cam.pth"), "--log_name", str(tmp_path / "log"),
              "--cam_out_dir", str(tmp_path / "cam"), "--ir_label_out_dir", str(tmp_path / "ir"),
              "--sem_seg_out_dir", str(tmp_path / "sem"), "--irn_weights_name", str(tmp_path / "sess" / "irn.pth")]
    out = run_sample.main(common + [
        "--no_pretrained", "True", "--cam_crop_size", "64", "--cam_resize_long", "64", "96", "--cam_batch_size", "4",
        "--cam_num_epoches", "1", "--cam_scales", "1.0", "--irn_network", "advcam.nets.efficientnet_lite0_irn",
        "--irn_crop_size", "96", "--irn_batch_size", "4", "--irn_num_epoches", "1", "--irn_infer_pad", "128",
        "--exp_times", "2", "--conf_fg_thres", "0.3", "--conf_bg_thres", "0.05",
        "--train_cam_pass", "True", "--make_cam_pass", "True", "--eval_cam_pass", "True",
        "--cam_to_ir_label_pass", "True", "--train_irn_pass", "True", "--make_sem_seg_pass", "True",
        "--eval_sem_seg_pass", "True"])
    state = torch.load(tmp_path / "sess" / "cam.pth")
    assert state["classifier.weight"].shape[0] == 80
    names = COCO14(toy_coco).read_list(os.path.join(toy_coco, "train14.txt"))
    keys = {n: np.load(tmp_path / "cam" / f"{n}.npy", allow_pickle=True).item()["keys"] for n in names}
    lab = COCO14(toy_coco, str(tmp_path / "sess")).cls_labels(names)
    for n, row in zip(names, lab, strict=True):  # the seeds' classes are the image's 80-class labels
        assert sorted(np.asarray(keys[n]).tolist()) == np.nonzero(row)[0].tolist()
    assert 0 <= out["eval_cam"]["miou"] <= 1 and len(out["eval_cam"]["mious"]) == 41  # the sweep 0.10..0.50
    # AdvCAM seeds through the same layer (two images, one climbing step): 80-class keys from the json's labels
    (tmp_path / "two.txt").write_text("\n".join(names[:2]) + "\n")
    stats = obtain_cam_masking.main(["--dataset", "coco14", "--coco_root", toy_coco, "--train_list",
                                     str(tmp_path / "two.txt"), "--num_workers", "0", "--cam_weights_name",
                                     str(tmp_path / "sess" / "cam.pth"), "--adv_iter", "1", "--cam_scales", "1.0",
                                     "--cam_out_dir", str(tmp_path / "adv")])
    assert stats["images"] == 2
    for n in names[:2]:
        adv = load_cam_npy(tmp_path / "adv" / f"{n}.npy")  # coco14 writes strided16: high_res recomputed on read
        assert sorted(np.asarray(adv["keys"]).tolist()) == sorted(np.asarray(keys[n]).tolist())
        assert adv["high_res"].shape[1:] == COCO14(toy_coco).load_seg_label(n).shape
    assert len(out["eval_sem_seg"]["iou"]) == 81 and 0 <= out["eval_sem_seg"]["miou"] <= 1
    for n in names:
        sem = np.array(load_png(tmp_path / "sem" / f"{n}.png"))
        assert sem.shape == COCO14(toy_coco).load_seg_label(n).shape
        assert set(np.unique(sem).tolist()) <= {0} | {int(k) + 1 for k in np.nonzero(lab[names.index(n)])[0]}


def load_png(path):
    from PIL import Image

    return Image.open(path)
