"""A train_semi step run by tests/test_semi_pass.py as one process or under ``torchrun --nproc_per_node 2``:
``python tests/semi_ddp_job.py VOC_ROOT WEAK_DIR OUT_FILE``. Trains a tiny CCT model (its batch norms frozen, as
SyncBatchNorm would make them agree on CUDA; only the decoders whose random draws do not depend on the batch) for
two steps of 4 labelled + 4 unlabelled crops with :func:`advcam.semi.train_cct`, and rank 0 saves the weights."""
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_cct import tiny_backbone  # noqa: E402

from advcam import cct, distributed, semi  # noqa: E402
from advcam.io import save_torch  # noqa: E402
from advcam.segmentation import SegTrainDataset  # noqa: E402

AUX = (("context_mask", 1), ("object_mask", 1), ("feature_drop", 1), ("feature_noise", 1))


class FrozenBNTiny(cct.CCTModel):
    def __init__(self):
        super().__init__(tiny_backbone(), 32, num_classes=21, channels=16, aux=AUX)

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self


def main(voc: str, weak: str, out: str) -> None:
    torch.set_num_threads(1)
    distributed.init("cpu")
    torch.manual_seed(0)
    model = FrozenBNTiny()
    names = [line.strip() for line in open(os.path.join(voc, "ImageSets/Segmentation/train_aug.txt"))]
    lab = SegTrainDataset(names[:4], voc, os.path.join(voc, "SegmentationClass"), 32, (0.75, 1.0), 0)
    ul = semi.SemiTrainDataset(names[4:], voc, weak, 32, (0.75, 1.0), 0)
    semi.train_cct(model, lab, ul, mode="cct_weak", batch_size=4, unlabeled_batch_size=4, num_iters=2,
                   rampup_iters=0, lr=0.1, backbone_lr=0.05, momentum=0.9, weight_decay=1e-4, power=0.9,
                   unsup_weight=30.0, weak_weight=0.4, checkpoint_path=out + ".ckpt", checkpoint_every=10,
                   device=torch.device("cpu"))
    if distributed.is_main():
        save_torch(out, {k: v.detach().clone() for k, v in model.state_dict().items()})
    distributed.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:4])
