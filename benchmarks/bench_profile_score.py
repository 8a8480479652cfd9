"""Does the layer-local (Fisher) profile rank plans as well as the network-output KL?

Issue 36 item 3: the sensitivity profile's default score is predicted from each layer's own
output error and the output's Fisher information (one capture pass per group of layers, then
one forward of the *layer* per point) instead of measured on the whole network with BatchNorm
re-calibrated (two network passes per point). This measures, on a trained built-in model:

* **points**: Spearman between the two profiles' scores over every measured point;
* **plans**: ``--plans`` random plans (each layer keep, or a random offered method at a random
  useful rank); each plan's predicted score under either profile (the allocation's sum of
  per-layer scores) against the plan's *measured* network KL (applied, BatchNorm
  re-calibrated, on 512 held-out training images) and its accuracy before fine-tune on the
  validation split. Spearman of each;
* the wall time of each profile.

Usage: ``python -m benchmarks.bench_profile_score [--model resnet8] [--data fashion-mnist]
[--plans 40] [--threads 1]``; prints a markdown section (pasted into
``benchmarks/BENCHMARKS_SCALE.md``).
"""

from __future__ import annotations

import argparse
import random
import time

import torch
from scipy.stats import spearmanr

from rankopt.data import load_data
from rankopt.evaluators import calibrate_bn, compute_logits, profile
from rankopt.models import get_pretrained
from rankopt.plan import apply_plan
from rankopt.searching.objective import _fisher
from rankopt.searching.objective._sensitivity import kl_score, measure_sensitivity
from rankopt.searching.space._space import SearchSpace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet8")
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--plans", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--fisher-classes", type=int, default=None, help="override FISHER_CLASSES (a study)"
    )
    args = parser.parse_args()
    if args.fisher_classes is not None:
        _fisher.FISHER_CLASSES = args.fisher_classes
    torch.set_num_threads(args.threads)
    model, test_acc = get_pretrained(args.model, args.data)
    splits = load_data(args.data)
    train_x = splits.train[0]
    images, held_out = train_x[:256], train_x[256:768]
    val_x, val_y = splits.val
    teacher = compute_logits(model, images)
    teacher_held = compute_logits(model, held_out)
    prof = profile(model, tuple(images.shape[1:]))
    space = SearchSpace(prof, None, n_outputs=int(teacher.shape[1]))

    timings = {}
    profiles = {}
    for score in ("fisher", "kl"):
        started = time.perf_counter()
        profiles[score] = measure_sensitivity(model, space, images, teacher, score=score)
        timings[score] = time.perf_counter() - started

    fisher, kl = profiles["fisher"], profiles["kl"]
    a, b = [], []
    for layer, methods in kl.points.items():
        for method, pts in methods.items():
            for macs, s in pts:
                a.append(fisher.score(layer, method, macs))
                b.append(s)
    rho_points = spearmanr(a, b).statistic

    rng = random.Random(args.seed)
    pred_f, pred_k, actual_kl, acc = [], [], [], []
    for _ in range(args.plans):
        layers = []
        for layer, methods in space.choices.items():
            if rng.random() < 0.3:
                continue
            method = rng.choice(methods)
            cands = space.candidates(layer, method)
            layers.append((layer, method, rng.choice(cands)))
        if not layers:
            continue
        pred_f.append(sum(fisher.score(lyr, m, c.macs) for lyr, m, c in layers))
        pred_k.append(sum(kl.score(lyr, m, c.macs) for lyr, m, c in layers))
        plan = space.plan([space.layer_plan(lyr, c) for lyr, _, c in layers], model_name="x")
        student = apply_plan(model, plan)
        calibrate_bn(student, images)
        actual_kl.append(kl_score(compute_logits(student, held_out), teacher_held))
        logits = compute_logits(student, val_x)
        acc.append(float((logits.argmax(1) == val_y).float().mean()))
    rows = [
        ("fisher (auto's choice above 2e12 MACs)", pred_f, timings["fisher"]),
        ("kl (network, BN re-calibrated; auto's choice below)", pred_k, timings["kl"]),
    ]
    print(f"### Profile score: {args.model} on {args.data} (dense test accuracy {test_acc:.4f})")
    print()
    print(
        f"{len(space.choices)} layers, {fisher.timing.get('n_pairs')} (layer, method) pairs, "
        f"{fisher.timing.get('n_points')} points; {len(acc)} random plans; "
        f"{args.threads} thread(s); Fisher classes per image {_fisher.FISHER_CLASSES}"
        ". "
        "Spearman of the two profiles over the points: "
        f"**{rho_points:.3f}**."
    )
    print()
    print("| profile score | wall time (s) | Spearman vs plan KL | Spearman vs -accuracy |")
    print("|---|---|---|---|")
    for name, pred, wall in rows:
        r_kl = spearmanr(pred, actual_kl).statistic
        r_acc = spearmanr(pred, [-x for x in acc]).statistic
        print(f"| {name} | {wall:.1f} | {r_kl:.3f} | {r_acc:.3f} |")


if __name__ == "__main__":
    main()
