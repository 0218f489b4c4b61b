"""`rgsyn <stage>`: one subcommand per DVC stage, plus `data check`, `params`, `estimate` and `preflight`.

Every stage takes `--params` (default `params.yaml`). Errors a user can fix (bad params, bad data
layout, bad checkpoints) print one line to stderr and exit with status 2.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Callable, Sequence

from rgsyn.errors import RgsynError
from rgsyn.paths import BENCHMARKS, DOMAINS, TRAINED_BENCHMARKS


def _stage(target: str) -> Callable:
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)


def _params(args):
    from rgsyn import config

    return config.load(args.params)


def _rank0_only() -> bool:
    """True on a rank other than 0: stages that only read and write files (data, collect, report)
    run once even when a launcher starts them on several processes."""
    from rgsyn import distributed

    return not distributed.is_main()


def cmd_data(args):
    if _rank0_only():
        return 0
    if args.data_cmd == "check":
        summary = _stage("rgsyn.data.check:check_dataset")(args.benchmark, args.root, profile=args.profile)
        print(json.dumps(summary, indent=2, sort_keys=True))
        return 0
    _run_stage("rgsyn.stages.data:run", _params(args))
    return 0


def _run_stage(target: str, params, **kwargs) -> None:
    """Run one pipeline stage with its fair share of threads, then record its wall time."""
    from rgsyn import stage_clock, threads

    threads.apply()
    _stage(target)(params, **kwargs)
    stage_clock.finish()


def cmd_params(args):
    import yaml

    from rgsyn import config, io

    text = yaml.safe_dump(config.profile_dict(args.profile), sort_keys=False)
    header = (f"# rgsyn params: the '{args.profile}' profile, written by `rgsyn params --profile "
              f"{args.profile}`.\n# Edit values here or with `dvc exp run -S key=value`.\n")
    if args.out == "-":
        sys.stdout.write(header + text)
    else:
        io.write_text(args.out, header + text)
        print(f"wrote the '{args.profile}' profile to {args.out}")
    return 0


def cmd_estimate(args):
    if args.measured:
        _stage("rgsyn.preflight.calibrate:run")(_params(args), args.measured, args.tflops, args.gpus, args.json)
        return 0
    _stage("rgsyn.estimate:run")(_params(args), tflops=args.tflops, gpus=args.gpus, as_json=args.json)
    return 0


def cmd_preflight(args):
    # each step's process takes its share of the cores (rgsyn.threads), not this waiting one
    return _stage("rgsyn.stages.preflight:run")(_params(args), args.stages, args.json, args.memory_gib,
                                                args.scratch, args.shrink, args.tflops, args.domains)


# `rgsyn <command>` runs `run` of the module named here, "module:function", imported only when the
# command runs: the stage of `rgsyn X` lives in rgsyn/stages/X.py (`data` too: see cmd_data).
STAGES: dict[str, tuple[str, str, Callable[[argparse.ArgumentParser], None]]] = {}


def _stage_cmd(name: str, target: str, help_: str, add_args=lambda p: None):
    STAGES[name] = (target, help_, add_args)


_stage_cmd("prior", "rgsyn.stages.prior:run",
           "pretrain the toy DiT prior on the generic domain (paper: load DiT-XL/2)")
_stage_cmd("coldstart", "rgsyn.stages.coldstart:run",
           "cold-start adapt the prior to the training identities of one domain",
           lambda p: p.add_argument("--domain", required=True, choices=DOMAINS))
_stage_cmd("encoder", "rgsyn.stages.encoder:run",
           "train the identity encoders (reward and held-out gold) of one domain on real data",
           lambda p: p.add_argument("--domain", required=True, choices=DOMAINS))


def _rl_args(p):
    p.add_argument("--domain", required=True, choices=DOMAINS)
    p.add_argument("--rewards", required=True, help="a key of rl.reward_variants (full, no_sem, ...)")


_stage_cmd("rl", "rgsyn.stages.rl:run", "DPOK fine-tuning with the multi-objective reward", _rl_args)


def _generate_args(p):
    p.add_argument("--benchmark", required=True, choices=TRAINED_BENCHMARKS)
    p.add_argument("--generator", required=True, help="'cold', 'rl-<reward variant>' or 'oracle' (toy/smoke: the toy world itself)")


_stage_cmd("generate", "rgsyn.stages.generate:run",
           "synthesise identities of one benchmark with one generator", _generate_args)


def _train_args(p):
    p.add_argument("--benchmark", required=True, choices=TRAINED_BENCHMARKS)
    p.add_argument("--variant", required=True, help="a key of `variants` in params")
    p.add_argument("--seed", type=int, default=None,
                   help="train this seed only (default: every seed of the variant, `seeds` plus "
                        "`control_seeds` for the control rows)")


_stage_cmd("train", "rgsyn.stages.train:run",
           "train and evaluate the downstream models of one row (benchmark x variant, every seed)", _train_args)
_stage_cmd("collect", "rgsyn.stages.collect:run",
           "merge the per-run metrics of one benchmark into benchmarks/<name>/metrics.json",
           lambda p: p.add_argument("--benchmark", required=True, choices=BENCHMARKS))
_stage_cmd("report", "rgsyn.stages.report:run", "render the tables, figures and reports/report.html")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rgsyn", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)

    def with_params(p):
        p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
        return p

    data = with_params(sub.add_parser("data", help="build the toy world (toy/smoke) or check the real "
                                                    "datasets (paper); `data check` checks one folder"))
    data_sub = data.add_subparsers(dest="data_cmd")
    check = data_sub.add_parser("check", help="check a dataset folder and print a JSON summary")
    # verification: the folder of LFW/AgeDB/CALFW/CFP-FP/CPLFW (pairs.txt folders or insightface .bin)
    check.add_argument("--benchmark", required=True, choices=[*BENCHMARKS, "verification"])
    check.add_argument("--root", required=True, help="the unpacked dataset folder")
    check.add_argument("--profile", default="paper", choices=["toy", "smoke", "paper"],
                       help="paper: compare counts with the official ones (default)")
    data.set_defaults(func=cmd_data)

    prm = sub.add_parser("params", help="write the full params of a profile (toy, smoke, paper)")
    prm.add_argument("--profile", required=True, choices=["toy", "smoke", "paper"])
    prm.add_argument("--out", default="-", help="file to write (default: stdout)")
    prm.set_defaults(func=cmd_params)

    est = with_params(sub.add_parser("estimate", help="FLOPs, peak memory, GPU-hours and wall time of every "
                                                      "stage for the params, before a launch"))
    est.add_argument("--tflops", type=float, default=400.0,
                     help="sustained throughput per GPU in TFLOP/s (default 400, bf16 on an H200)")
    est.add_argument("--gpus", type=int, default=8, help="GPUs for the wall-time column (default 8)")
    est.add_argument("--json", action="store_true", help="print JSON records instead of Markdown")
    est.add_argument("--measured", metavar="PREFLIGHT_JSON",
                     help="calibrate with the stage hours of `rgsyn preflight --json` instead of --tflops")
    est.set_defaults(func=cmd_estimate)

    pre = with_params(sub.add_parser("preflight", help="one real step of every stage: time, peak memory and "
                                                       "projected hours of the full run, before a launch"))
    pre.add_argument("--stages", default="data,prior,coldstart,encoder,rl,generate,train",
                     help="comma list of the stages to check (default: all)")
    pre.add_argument("--domains", default="persons,faces", help="comma list of the generator domains whose "
                     "steps to check (default: both)")
    pre.add_argument("--json", metavar="PATH", help="write the table's records (for `estimate --measured` "
                                                    "and the report: reports/preflight.json)")
    pre.add_argument("--memory-gib", type=float, help="device memory to check the peaks against (default: the "
                                                      "device's own)")
    pre.add_argument("--scratch", help="folder for what the steps write (default: a temp folder, removed)")
    pre.add_argument("--shrink", default="auto", choices=["auto", "none"],
                     help="auto: on CPU shrink per-step counts and scale by FLOPs (default); none: full size")
    pre.add_argument("--tflops", type=float, default=400.0, help="assumed TFLOP/s of the FLOP-based column")
    pre.set_defaults(func=cmd_preflight)

    for name, (target, help_, add_args) in STAGES.items():
        p = with_params(sub.add_parser(name, help=help_, description=help_))
        add_args(p)

        def run(args, _target=target, _name=name):
            if _name in ("collect", "report") and _rank0_only():
                return 0
            kwargs = {k: v for k, v in vars(args).items() if k not in ("cmd", "params", "func")}
            _run_stage(_target, _params(args), **kwargs)
            return 0

        p.set_defaults(func=run)
    return parser


def _is_stage(argv: Sequence[str]) -> bool:
    return bool(argv) and (argv[0] in STAGES or (argv[0] == "data" and "check" not in argv[1:]))


def main(argv: Sequence[str] | None = None, warm: bool = True) -> int:
    """`warm`: when run as the `rgsyn` command (argv None), hand a pipeline stage to the warm
    server (`rgsyn.warm`); called with an explicit argv (tests), always run here."""
    from rgsyn import stage_clock

    start = stage_clock.begin()
    if argv is None and warm and _is_stage(sys.argv[1:]):
        from rgsyn import warm as warm_server

        if warm_server.enabled():
            rc = warm_server.run_stage(sys.argv[1:], start, main)
            if rc is not None:
                return rc
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except RgsynError as e:
        print(f"rgsyn {args.cmd}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
