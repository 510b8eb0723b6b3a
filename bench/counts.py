"""Instruction-count perf gate: callgrind counts of the suite's hot paths.

Wall-clock time on a shared 2-core machine moves by 20% to 2x between runs; the number of
instructions a step executes does not (at most 0.004% over 5 runs here). Every benchmark runs in **one**
``valgrind --tool=callgrind`` process, single-threaded, with instrumentation switched on only
around the measured calls: importing torch instrumented costs about 2 min 40 s under valgrind,
so a process per benchmark, as ``Timer.collect_callgrind`` starts, would not fit the budget.
Collection is toggled through torch's own callgrind bindings (``torch._C._valgrind_toggle`` and
``_valgrind_toggle_and_dump_stats``, the hooks ``Timer.collect_callgrind`` uses), each
benchmark's dump is read with ``callgrind_annotate`` into torch's ``FunctionCounts``, and the
per-function counts are kept, so that a regression names the functions that grew.

The gate compares like with like on any CPU: in the same run it counts the code under test and
the code of the **reference commit** that ``perf_counts.json`` names (checked out with ``git
worktree``), one valgrind process each, kernels pinned alike, and fails above 1.05x the
reference's count. A slowdown spread over several commits is still caught; a deliberate one
moves the reference with ``--update-baseline`` in its own commit. The stored counts, keyed by
machine class (torch version + CPU class, see ``machine_key``), are the record and the fallback
when the reference commit is not in the clone (a shallow one).

``python -m bench.counts`` measures and compares; ``--update-baseline`` stores this machine
class's counts and makes HEAD the reference; ``--repeats 5 --out F`` records the spread of the
counts over separate processes."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from alexnet.untrusted import Parser
from bench.reference import BASELINE, compare, fallback, load_baseline, reference_tree, store_baseline

TOP_FUNCTIONS = 150  # per benchmark, kept in the baseline for the diff a failure prints
NUMBER = {"train_step_28px_b4": 2, "inference_224px_b2": 2, "pipeline_224px_b32_augment": 4,
          "epoch_bookkeeping_8img": 1}
# valgrind runs AVX2 kernels about 150x slower than SSE ones (a 16x4096x4096 matmul: 15 s against
# 0.1 s), so the kernels are pinned to their SSE4 code paths, and the gate fits its budget.
PINNED_ISA = {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "SSE41"}


def _benchmarks():
    """name -> a zero-argument callable to count, built after the untimed import of torch."""
    import itertools

    import torch

    from alexnet.config import Config
    from alexnet.data import FashionMNIST
    from alexnet.train import build, train, train_step
    from bench.gate import loader, tiny_data

    images, labels = tiny_data()
    cpu = torch.device("cpu")

    def train_28():
        sgd = build(Config(input_size=28, batch_size=4, device="cpu"), cpu, seed=0)
        batches = itertools.cycle(list(loader(images, labels, 4, 28).epoch(0)))
        return lambda: train_step(sgd, *next(batches))

    def infer_224():
        model = build(Config(input_size=224, device="cpu"), cpu, seed=0).model.eval()
        x, _ = next(loader(images, labels, 2, 224).epoch(0))

        def infer():
            with torch.no_grad():
                model(x)
        return infer

    def pipeline():
        batches = loader(images, labels, 32, 224, augment=True)
        stream = itertools.chain.from_iterable(batches.epoch(e) for e in itertools.count())
        return lambda: next(stream)

    def bookkeeping():
        # a short train(): 8 images at 28 px in batches of 2, evaluated on 4, no checkpoint
        data = FashionMNIST(images[:8], labels[:8], images[:4], labels[:4])
        config = Config(input_size=28, batch_size=2, epochs=1, device="cpu")
        return lambda: train(config, seed=0, data=data, progress=False)

    return {"train_step_28px_b4": train_28, "inference_224px_b2": infer_224,
            "pipeline_224px_b32_augment": pipeline, "epoch_bookkeeping_8img": bookkeeping}


def _child(names: list[str], meta_path: str) -> None:
    """Runs under valgrind: build each benchmark, warm it up, count ``NUMBER`` calls (one dump each)."""
    import torch

    torch.set_num_threads(1)
    benchmarks = _benchmarks()
    pid = str(os.getpid())
    for name in names:
        fn = benchmarks[name]()
        for _ in range(2):  # warm-up: allocator caches, oneDNN primitives, lazy imports
            fn()
        subprocess.run(["callgrind_control", "--instr=on", pid], check=True, capture_output=True)
        torch._C._valgrind_toggle()
        for _ in range(NUMBER[name]):
            fn()
        torch._C._valgrind_toggle_and_dump_stats()
        subprocess.run(["callgrind_control", "--instr=off", pid], check=True, capture_output=True)
    import alexnet

    Path(meta_path).write_text(json.dumps({"isa": torch.backends.cpu.get_cpu_capability(),
                                           "torch": torch.__version__, "alexnet": alexnet.__file__}))


def machine_key(meta: dict) -> str:
    """Counts are comparable only for the same torch build, CPU class and kernel code path."""
    from alexnet.env import cpu_class  # here, not at import: the counted processes import only what they count

    return f"torch {meta['torch']} / {cpu_class()} / kernels {meta['isa']}+SSE4"


_LINE = re.compile(r"^\s*([0-9,]+)\s+(.+:.+)$")


def short_name(function: str) -> str:
    """A function's name as stored: addresses (JIT code moves between runs) and the folders of its
    library (they differ between clones and environments) left out."""
    function = re.sub(r"0x[0-9a-f]+", "0x…", function)
    return re.sub(r"\[[^\]]*/([^/\]]+)\]$", r"[\1]", function)


def parse(path: Path) -> dict[str, int]:
    """Exclusive instruction counts per function of one callgrind dump."""
    out = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", "--show-percs=no", str(path)],
                         check=True, capture_output=True, text=True).stdout
    counts: dict[str, int] = {}
    started = False
    for line in out.splitlines():
        if not started:
            started = bool(re.match(r"\s*Ir\s+file:function", line))
            continue
        m = _LINE.match(line)
        if m:
            fn = short_name(m.group(2))
            counts[fn] = counts.get(fn, 0) + int(m.group(1).replace(",", ""))
        elif line.strip() and not line.startswith("-"):
            break
    return counts


class Counting:
    """One valgrind process counting ``names`` (started at once, so that two can run side by side);
    ``result()`` waits and returns {"machine": key, "benchmarks": {name: {"per_call": instructions
    per call, "functions": the top functions' counts per call}}}."""

    def __init__(self, names: list[str], *, pythonpath: str | None = None):
        for tool in ("valgrind", "callgrind_control", "callgrind_annotate"):
            if not shutil.which(tool):
                raise SystemExit(f"{tool} not found: install valgrind (Debian: apt-get install valgrind)")
        unknown = sorted(set(names) - set(NUMBER))
        if unknown:
            raise SystemExit(f"unknown benchmark(s) {unknown}: choose from {sorted(NUMBER)}")
        self.names = names
        env = {**os.environ, **PINNED_ISA, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, str(Path(__file__).parents[1]),
                                                        env.get("PYTHONPATH")) if p)
        self.tmp = tempfile.TemporaryDirectory(prefix="callgrind-")
        self.out, self.meta = Path(self.tmp.name) / "callgrind.out", Path(self.tmp.name) / "meta.json"
        self.start = time.perf_counter()
        self.proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={self.out}", "--instr-atstart=no",
             "--collect-atstart=no", sys.executable, "-m", "bench.counts", "--child", str(self.meta), *names],
            env=env, cwd=self.tmp.name,  # not the tree: -m puts the cwd first on sys.path
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def result(self) -> dict:
        _, err = self.proc.communicate()
        try:
            if self.proc.returncode:
                raise RuntimeError(f"valgrind exited with {self.proc.returncode}:\n{err[-3000:]}")
            benchmarks = {}
            for i, name in enumerate(self.names):
                counts = parse(Path(f"{self.out}.{i + 1}"))
                top = sorted(counts.items(), key=lambda kv: -kv[1])[:TOP_FUNCTIONS]
                benchmarks[name] = {"per_call": round(sum(counts.values()) / NUMBER[name]),
                                    "functions": {k: round(v / NUMBER[name]) for k, v in top}}
            meta = json.loads(self.meta.read_text())
            return {"machine": machine_key(meta), "benchmarks": benchmarks, "alexnet": meta["alexnet"],
                    "wall_s": round(time.perf_counter() - self.start, 1)}
        finally:
            self.tmp.cleanup()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        _child(argv[2:], argv[1])
        return 0
    p = Parser(prog="python -m bench.counts", description=__doc__,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", default=list(NUMBER), help=f"benchmarks (default: all of {list(NUMBER)})")
    p.add_argument("--repeats", type=int, default=1,
                   help="count this many times in separate valgrind processes and report the spread")
    p.add_argument("--out", help="write the counts (and with --repeats, their spread) to this JSON file")
    p.add_argument("--update-baseline", action="store_true",
                   help=f"store this machine class's counts in {BASELINE.name} and make HEAD the reference commit")
    args = p.parse_args(argv)
    if not 1 <= args.repeats <= 50:
        p.error(f"invalid --repeats {args.repeats}: expected 1 to 50")
    runs = []
    baseline = load_baseline()
    with reference_tree(None if args.update_baseline else baseline["reference_commit"]) as ref:
        against = Counting(args.names, pythonpath=str(ref)) if ref else None  # side by side with the first run
        for i in range(args.repeats):
            runs.append(Counting(args.names).result())
            print(f"run {i + 1}/{args.repeats}: {runs[-1]['wall_s']} s", flush=True)
        reference_counts = against.result() if against else None
    measured = runs[0]
    if reference_counts:
        print(f"reference: commit {baseline['reference_commit'][:12]}, counted in the same run")
        lines, failures = compare(measured, {reference_counts["machine"]: reference_counts["benchmarks"]})
    else:
        stored, note = fallback(measured, baseline)
        lines, failures = compare(measured, stored)
        lines.insert(0, note)
    print("\n".join(lines + failures))
    spread = {name: {"min": min(r["benchmarks"][name]["per_call"] for r in runs),
                     "max": max(r["benchmarks"][name]["per_call"] for r in runs)} for name in args.names}
    for name, s in spread.items():
        s["max_over_min"] = round(s["max"] / s["min"], 6)
        print(f"{name}: max/min over {len(runs)} runs {s['max_over_min']:.5f}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"machine": measured["machine"], "runs": len(runs),
                                              "per_call": {n: [r["benchmarks"][n]["per_call"] for r in runs]
                                                           for n in args.names},
                                              "spread": spread, "wall_s": [r["wall_s"] for r in runs]}, indent=1))
    if args.update_baseline:
        store_baseline(measured)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
