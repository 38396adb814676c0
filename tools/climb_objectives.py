"""The climb of ``AdvCAM`` on a hooked classifier (EfficientNet-Lite0, the real photos of scripts/demo_imagenet.py),
replicated with instruments: per step, the map's peak, the per-cell target map on the object's and the background's
cells, the features, the per-cell log-odds, and the coverages; and candidate objectives for the class term
(docs/advcam_any_network.md, section 3f).

    python tools/climb_objectives.py --objective logit --others logodds --lam 7      # the library's default, replicated
    python tools/climb_objectives.py --objective relu_mean --others sum              # the reference's computation
    python tools/climb_objectives.py --objective pixel_lo_softplus                   # softplus of the per-cell log-odds
    python tools/climb_objectives.py --objective oracle_obj                          # the boxes' cells only (a test)

Prints each photo's trace and a summary line (photos won, mean coverage changes at 0.5 and 0.3 of the max, photos
whose target logit rises); ``--out FILE`` also writes the traces as JSON. The loop performs the library's operations in
another order, so per-photo results can differ from ``scripts/demo_imagenet.py`` by a photo or two; the means agree.
"""

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import advcam.tools.demo_imagenet as D  # noqa: E402
from advcam.advcam import class_objective, climb_step, gradcam_weights, normalize_maps, restriction_term  # noqa: E402

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--images", default=",".join(D.PHOTOS))
p.add_argument(
    "--objective",
    default="logit",
    choices=("logit", "relu_mean", "pixel_lo", "pixel_lo_relu", "pixel_lo_softplus", "oracle_obj"),
)
p.add_argument("--others", default="logodds", choices=("sum", "logodds", "none"))
p.add_argument("--lam", type=float, default=7.0)
p.add_argument("--T", type=int, default=27)
p.add_argument("--xi", type=float, default=0.08)
p.add_argument("--out", default=None, help="write the per-step traces here as JSON")
a = p.parse_args()
torch.set_num_threads(1)
model = D.load_classifier()
W, b = model.net._fc.weight.detach(), model.net._fc.bias.detach()
store = {}
model.head.register_forward_hook(lambda m, i, o: store.__setitem__("F", o))
TS = [0, 1, 2, 4, 8, 13, 20, 26]
out = {}
for name in a.images.split(","):
    photo = D.load_photo(name)
    size = photo.shape[:2]
    x0 = D.to_input([photo])
    with torch.no_grad():
        c = D.TARGETS.get(name, int(model(x0).argmax()))
    obj = D.box_mask(size, D.BOXES[name])
    x = x0.clone()
    acc = R0 = G0 = None
    rec = []
    for t in range(a.T):
        x.requires_grad_(True)
        logits = model(x)
        Fm = store["F"]
        S = torch.einsum("kc,bchw->bkhw", W, Fm)  # per-pixel class maps, bias-free
        (G,) = torch.autograd.grad(logits[0, c], Fm, retain_graph=True)
        G = G.detach()
        if t == 0:
            G0 = G.clone()
        w = gradcam_weights(G[:, None], "reference")[:, 0]
        R = F.relu((Fm * w).sum(1))  # [1, h, w]
        if t == 0:
            R0 = R.detach()
            h, wd = R.shape[-2:]
            frac = F.adaptive_avg_pool2d(obj[None, None].float(), (h, wd))[0, 0]
            # cell masks from area fraction of the box (interpolate exactly via resize of the mask)
            frac = F.interpolate(obj[None, None].float(), size=(h, wd), mode="area")[0, 0]
            cobj, cbg = frac > 0.5, frac < 0.5
        acc = R.detach() if acc is None else acc + R.detach()
        with torch.no_grad():
            Sd = S.detach()[0]
            m = Sd.mean(0)  # common term: mean over the 1000 classes
            Sc = Sd[c]
            lse_o = torch.logsumexp(torch.cat([Sd[:c] + b[:c, None, None], Sd[c + 1 :] + b[c + 1 :, None, None]]), 0)
            ploc = Sc + b[c] - lse_o  # per-pixel log-odds of c
            Fd = Fm.detach()[0]

            def up(mp, frac_, size=size, obj=obj):
                mn = normalize_maps(D.upsample(mp[None], size))[0]
                return D.coverage(mn, obj, frac_)

            r = dict(
                t=t,
                logit=float(logits[0, c]),
                logodds=float(class_objective(logits[0].detach(), torch.tensor(c), "logodds")),
                Rmax=float(R.max() / R0.max()),
                R_obj=float(R[0][cobj].mean() / R0.max()),
                R_bg=float(R[0][cbg].mean() / R0.max()),
                Sc_obj=float(Sc[cobj].mean()),
                Sc_bg=float(Sc[cbg].mean()),
                m_obj=float(m[cobj].mean()),
                m_bg=float(m[cbg].mean()),
                F_obj=float(Fd[:, cobj].mean()),
                F_bg=float(Fd[:, cbg].mean()),
                Scpos_bg=float((Sc[cbg] > 0).float().mean()),
                Scpos_obj=float((Sc[cobj] > 0).float().mean()),
                plo_pos_obj=float((ploc[cobj] > 0).float().mean()),
                plo_pos_bg=float((ploc[cbg] > 0).float().mean()),
                dx_obj=float((x.detach() - x0).abs().mean(1)[0][obj].mean()),
                dx_bg=float((x.detach() - x0).abs().mean(1)[0][~obj].mean()),
                Gdiff=float((G - G0).abs().max() / G0.abs().max()),
            )
            if t in TS or t == a.T - 1:
                r["step_cov03"] = up(R[0], 0.3)
                r["step_cov05"] = up(R[0], 0.5)
                r["acc_cov03"] = up(acc[0], 0.3)
                r["acc_cov05"] = up(acc[0], 0.5)
            rec.append(r)
        if t == a.T - 1:
            break
        if a.objective == "logit":
            lg = logits
        elif a.objective == "relu_mean":
            lg = F.relu(S + b[None, :, None, None]).mean((2, 3))
        if a.objective in ("logit", "relu_mean"):
            L_cls = class_objective(lg, torch.tensor([c]), a.others)
        else:
            Sb = S + b[None, :, None, None]
            lo_pix = class_objective(Sb.permute(0, 2, 3, 1), torch.full(Sb.shape[-2:], c)[None], "logodds")  # [1,h,w]
            if a.objective == "pixel_lo_relu":
                L_cls = F.relu(lo_pix).mean((1, 2))
            elif a.objective == "pixel_lo_softplus":
                L_cls = F.softplus(lo_pix).mean((1, 2))
            elif a.objective == "pixel_lo":
                L_cls = lo_pix.mean((1, 2))
            elif a.objective == "oracle_obj":  # diagnostic only: the target's per-pixel logit on the object's cells
                L_cls = Sb[:, c][:, cobj].mean(1)
        L_ad = restriction_term(R, R0, 0.5, "max")
        (g,) = torch.autograd.grad((L_cls - a.lam * L_ad).sum(), x)
        x = climb_step(x.detach()[:, None], g[:, None], a.xi)[:, 0]
    out[name] = rec
    print(name, c, "cells obj/bg", int(cobj.sum()), int(cbg.sum()))
    for r in rec:
        if "acc_cov03" in r:
            pairs = [("logit", "logit"), ("lo", "logodds"), ("Rmax", "Rmax"), ("Robj", "R_obj"), ("Rbg", "R_bg"),
                     ("Sc_obj", "Sc_obj"), ("Sc_bg", "Sc_bg"), ("m_obj", "m_obj"), ("m_bg", "m_bg"),
                     ("F_obj", "F_obj"), ("F_bg", "F_bg"), ("Sc>0_obj", "Scpos_obj"), ("Sc>0_bg", "Scpos_bg"),
                     ("plo>0_obj", "plo_pos_obj"), ("plo>0_bg", "plo_pos_bg"), ("Gd", "Gdiff"), ("dx_obj", "dx_obj"),
                     ("dx_bg", "dx_bg")]
            cov = " ".join(f"{k} {r[k][0]:.2f}/{r[k][1]:.2f}" for k in ("step_cov03", "acc_cov03", "acc_cov05"))
            print(f" t={r['t']:2d} " + " ".join(f"{lab} {r[key]:.3g}" for lab, key in pairs) + " " + cov, flush=True)
wins, g5, b5, g3, b3, rises = 0, [], [], [], [], 0
for rec in out.values():
    f, last = rec[0], rec[-1]
    (co, cb), (ao, ab) = f["acc_cov05"], last["acc_cov05"]
    (co3, cb3), (ao3, ab3) = f["acc_cov03"], last["acc_cov03"]
    wins += ao > co and ab - cb < ao - co  # more object, and less background growth than object growth, at 0.5
    g5.append(ao - co)
    b5.append(ab - cb)
    g3.append(ao3 - co3)
    b3.append(ab3 - cb3)
    rises += last["logit"] > f["logit"]
print(
    f"{a.objective}/{a.others}/lambda {a.lam:g}: won {wins} of {len(out)}; at 0.5 {np.mean(g5):+.3f} / "
    f"{np.mean(b5):+.3f}; at 0.3 {np.mean(g3):+.3f} / {np.mean(b3):+.3f}; target logit rises on {rises}"
)
if a.out:
    with open(a.out, "w") as fh:
        json.dump(out, fh)
