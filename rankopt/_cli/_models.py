"""``rankopt apply``, ``finetune``, ``profile`` and ``models``.

Heavy modules are imported inside the functions, so ``rankopt --help`` stays fast.
"""

from __future__ import annotations

import argparse
from typing import Any

from rankopt._cli._common import (
    add_calibration_arg,
    add_device_arg,
    add_latency_threads_arg,
    add_model_args,
    builtin_models,
    calibrate,
    check_out,
    load_model_and_data,
    say,
)
from rankopt._defaults import DEFAULT_LATENCY_RUNTIME

FINETUNE_BATCH = 64
"""Images per step of ``rankopt finetune``."""


def cmd_apply(args: argparse.Namespace) -> int:
    """Apply a plan to the model (BatchNorm re-calibrated when data is at hand) and save the
    compressed model (.onnx: checked ONNX, else torch.save)."""
    from rankopt.evaluators import count_macs
    from rankopt.latency import save_model
    from rankopt.plan import CompressionPlan, apply_plan

    check_out(args.out)
    plan = CompressionPlan.load(args.plan)
    need_data = args.model in builtin_models() or (
        getattr(args, "data", None) is not None and not args.no_calibrate
    )
    model, data = load_model_and_data(args, need_data=need_data)
    compressed = apply_plan(model, plan)
    calibrate(compressed, data, args)
    macs = count_macs(compressed, tuple(plan.input_shape))
    n_params = sum(p.numel() for p in compressed.parameters())
    print(f"{macs} macs, {n_params} params")
    print(save_model(compressed, tuple(plan.input_shape), args.out))  # .onnx or torch.save
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    """Full fine-tune of a plan; report test accuracy, macs, params and latency vs dense."""

    from rankopt.evaluators import count_macs, evaluate_accuracy, full_finetune
    from rankopt.latency import check_latency_threads, compare_latency_ms, get_runtime
    from rankopt.plan import CompressionPlan, apply_plan

    if args.out:
        check_out(args.out)
    plan = CompressionPlan.load(args.plan)
    runtime = args.latency_runtime or (
        "onnxruntime"
        if args.out and str(args.out).lower().endswith(".onnx")
        else str(plan.provenance.get("latency_runtime") or DEFAULT_LATENCY_RUNTIME)
    )
    rt = get_runtime(runtime)
    rt.check_available()  # before the fine-tune, not after it
    check_latency_threads(args.latency_threads)
    model, data = load_model_and_data(args)
    compressed = apply_plan(model, plan)
    calibrate(compressed, data, args)
    say(f"fine-tuning for {args.epochs} epochs ...")
    from rankopt.data import as_split

    train, test = as_split(data.train, "training"), as_split(data.test, "test")
    compressed = full_finetune(
        compressed,
        model,
        # tensors are in memory already; a Dataset (ImageFolder) streams, one batch at a time
        train.tensors or train.training_batches(FINETUNE_BATCH, args.seed),
        batch_size=FINETUNE_BATCH,
        epochs=args.epochs,
        seed=args.seed,
        progress=say,
        device=args.device,
    ).cpu()  # counted, timed (CPU latency) and saved on the CPU
    shape = tuple(plan.input_shape)
    say(f"timing both models side by side on {rt.description} ...")
    threads = args.latency_threads
    latency = compare_latency_ms([model, compressed], shape, runtime=runtime, n_threads=threads)
    batch_sizes = sorted(latency)
    rows = []
    for i, (label, net) in enumerate((("dense", model), ("compressed", compressed))):
        rows.append(
            (
                label,
                evaluate_accuracy(net, test.batches()),  # streamed
                count_macs(net, shape),
                sum(p.numel() for p in net.parameters()),
                *(latency[b][i] for b in batch_sizes),
            )
        )
    header = "".join(f" {f'latency_ms_batch{b}':>18}" for b in batch_sizes)
    print(f"{'model':<11} {'test_acc':>8} {'macs':>12} {'params':>10}{header}")
    for label, acc, macs, params, *lat in rows:
        times = "".join(f" {t:>18.3f}" for t in lat)
        print(f"{label:<11} {acc:>8.4f} {macs:>12d} {params:>10d}{times}")
    d, c = rows
    ratios = ", ".join(f"{latency[b][1] / latency[b][0]:.3f} at batch {b}" for b in batch_sizes)
    print(
        f"ratios: macs {c[2] / d[2]:.3f}, params {c[3] / d[3]:.3f}, latency {ratios} "
        f"({rt.description}, {threads} thread{'s' if threads > 1 else ''}, timed side "
        f"by side with dense on this CPU); accuracy change {c[1] - d[1]:+.4f}"
    )
    if args.out:
        from rankopt.latency import save_model

        print(save_model(compressed, shape, args.out))  # .onnx: checked ONNX; else torch.save
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    """List every layer, its dense cost and whether (and why not) it can be decomposed."""
    from rankopt.evaluators import profile

    model, data = load_model_and_data(args, need_data=True)
    prof = profile(model, data.input_shape)
    print(f"{'layer':<28} {'kind':<7} {'weight shape':<18} {'macs':>10} {'params':>8}  eligible")
    for info in prof.layers:
        shape = "x".join(map(str, info.weight_shape)) if info.kind != "other" else "-"
        flag = "yes" if info.eligible else f"no: {info.reason}"
        print(
            f"{info.name:<28} {info.kind:<7} {shape:<18} {info.macs:>10} {info.n_params:>8}  {flag}"
        )
    print(f"total: {prof.macs} macs, {prof.n_params} params; fingerprint {prof.fingerprint}")
    if prof.skipped_ops:
        print(
            "ops fvcore did not count: "
            + ", ".join(f"{k} x{v}" for k, v in prof.skipped_ops.items())
        )
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """List built-in models, data sets and methods."""
    from rankopt.data import list_data
    from rankopt.models import list_models
    from rankopt.spaces import list_methods

    print("models:  " + ", ".join(list_models()))
    print("data:    " + ", ".join(list_data()))
    print("methods: " + ", ".join(list_methods()))
    return 0


def add_model_parsers(sub: Any) -> None:
    """Register ``rankopt apply``, ``finetune``, ``profile`` and ``models``."""
    from rankopt.latency import RUNTIMES

    p = sub.add_parser("apply", help="apply a plan and save the compressed model")
    p.add_argument("plan", help="plan JSON")
    add_model_args(p)
    p.add_argument(
        "--out",
        default="model.pt",
        help="output file: .onnx exports ONNX (checked with onnxruntime), else torch.save "
        "(default: %(default)s)",
    )
    add_calibration_arg(p)
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser("finetune", help="fully fine-tune a plan and compare with the dense model")
    p.add_argument("plan", help="plan JSON")
    add_model_args(p)
    p.add_argument("--epochs", type=int, default=5, help="epochs (default: %(default)s)")
    add_device_arg(p)
    add_calibration_arg(p)
    p.add_argument("--out", help="save the fine-tuned model here (.onnx: ONNX, else torch.save)")
    p.add_argument(
        "--latency-runtime",
        choices=sorted(RUNTIMES),
        help="where the latency against dense is measured (batch 1 and 64, side by side): "
        "eager PyTorch or ONNX Runtime (default: onnxruntime when --out is .onnx, else the "
        "runtime of the plan's study, else onnxruntime)",
    )
    add_latency_threads_arg(p)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("profile", help="list layers, costs and eligibility")
    add_model_args(p)
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("models", help="list built-in models, data sets and methods")
    p.set_defaults(func=cmd_models)
