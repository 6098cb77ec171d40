"""profiles/slurm on a real SLURM cluster (tests/slurm/up.sh starts one on this machine).

Not part of the default test run (marker `slurm`); `make test-slurm` brings the cluster up, runs
this module and stops the cluster again. It checks, in temporary copies of the workflow:

- the tiny preset through the SLURM executor: every training job is submitted with sbatch and
  completes; sacct lists each of them with the account, partition, CPUs, memory and time limit
  the profile asked for, and no GPU; the tables equal those of a local run (`--cores 2`),
  timing columns aside;
- a training job cancelled with scancel in the middle of an epoch: rerunning the workflow
  resumes that run from its checkpoint (not from scratch) and finishes it;
- the cluster enforces memory requests (as real clusters do): a job over its --mem is killed,
  so the tiny preset's jobs completing within theirs means the requests suffice.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.test_workflow import REPO, check, write_mnist_like
from tests.test_workflow import snakemake as run_tiny

pytestmark = pytest.mark.slurm

ACCOUNT = os.environ.get("ASGE_SLURM_ACCOUNT", "asge")
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+)")
TINY_MEM_MB = yaml.safe_load((REPO / "config" / "presets" / "tiny.yaml").read_text())["resources"]["mem_mb"]
# Table columns that measure time or speed: they differ between any two runs.
TIMING = re.compile(r"time|per_s|speed|duration")


def cluster_problem() -> str | None:
    """Why no SLURM cluster is usable here, or None."""
    if not shutil.which("sinfo") or not shutil.which("sacct"):
        return "SLURM is not installed (sinfo/sacct missing): run tests/slurm/up.sh as root, or `make test-slurm`"
    res = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    if res.returncode != 0 or not re.search(r"idle|mixed|alloc", res.stdout):
        return f"no SLURM node is up ({(res.stderr or res.stdout).strip()[:200]}): run tests/slurm/up.sh"
    if subprocess.run(["sacct", "-n", "-X", "-S", "now-1minutes"], capture_output=True).returncode != 0:
        return "sacct does not work (no slurmdbd): run tests/slurm/up.sh"
    return None


@pytest.fixture(scope="module", autouse=True)
def cluster():
    """Skip (with the reason) where no cluster runs; checked only when a slurm test is selected."""
    problem = cluster_problem()
    if problem:
        pytest.skip(problem)


def copy_workflow(dest: Path) -> Path:
    """The workflow with its own copy of the code (asge, baselines) and run files: jobs run in
    this folder, so `python -m asge.train` imports the copy, and edits to the repository during
    the test (other work in the same tree) cannot make the two runs differ."""
    dest.mkdir(parents=True)
    for item in ("Snakefile", "workflow", "config", "profiles", "asge", "baselines"):
        src = REPO / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / item)
    return dest


def snakemake(work: Path, data: Path, *args: str, config: tuple[str, ...] = (), timeout: int = 1800
              ) -> subprocess.CompletedProcess:
    """The tiny preset in `work`, the cores left to the profile, jobs charged to the test account."""
    return run_tiny(work, data, *args, config=config, timeout=timeout, cores=None, env={"SBATCH_ACCOUNT": ACCOUNT})


def tiny_data(root: Path) -> Path:
    """Tiny MNIST and FashionMNIST in their real formats under root."""
    write_mnist_like(root, "MNIST", 12, 5, seed=0)
    write_mnist_like(root, "FashionMNIST", 12, 5, seed=1)
    return root


def sacct(jobids, fields: str) -> list[dict]:
    """One dict per job (allocation only, -X) from sacct."""
    res = subprocess.run(["sacct", "-X", "-P", "-n", "-j", ",".join(jobids), "-o", fields],
                         capture_output=True, text=True, check=True)
    keys = fields.split(",")
    return [dict(zip(keys, line.split("|"))) for line in res.stdout.splitlines() if line]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(slurm copy, local copy, snakemake output of the SLURM run, seconds from start to end)."""
    tmp = tmp_path_factory.mktemp("slurm")
    data = tiny_data(tmp / "data")
    local, on_slurm = copy_workflow(tmp / "local"), copy_workflow(tmp / "slurm")  # the same code
    check(snakemake(local, data, "--cores", "2"))
    start = time.time()
    out = check(snakemake(on_slurm, data, "--profile", "profiles/slurm"))
    return on_slurm, local, out, time.time() - start


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """(workflow copy, tiny data) for the checks that run single jobs."""
    tmp = tmp_path_factory.mktemp("small")
    return copy_workflow(tmp / "work"), tiny_data(tmp / "data")


def test_every_training_job_goes_through_sbatch_and_completes(runs):
    work, _, out, seconds = runs
    jobids = [slurm for _, slurm in SUBMITTED.findall(out)]
    planned = len(list((work / "results" / "tiny" / "runs").glob("*/*/metrics.json")))
    assert planned == 11 and len(jobids) == planned, out[-4000:]
    rows = sacct(jobids, "JobID,JobName,Comment,Account,Partition,State,ExitCode,AllocCPUS,ReqMem,Timelimit,"
                         "AllocTRES,Submit,Start,End")
    print(f"\n{len(rows)} SLURM jobs in {seconds:.0f} s (first submission to last completion, incl. local rules)")
    for r in rows:
        print(" ".join(f"{k}={v}" for k, v in r.items()))
    assert len(rows) == planned
    for r in rows:
        assert r["State"] == "COMPLETED" and r["ExitCode"] == "0:0", r
        assert r["Comment"].startswith("rule_train_wildcards_"), r
        assert r["Account"] == ACCOUNT and r["Partition"] == "cpu", r
        # the tiny preset's resources: 1 thread, its mem_mb, 10 minutes, no GPU
        assert r["AllocCPUS"] == "1" and r["ReqMem"] in (f"{TINY_MEM_MB}M", f"{TINY_MEM_MB}Mn"), r
        assert r["Timelimit"] == "00:10:00", r
        assert "gpu" not in r["AllocTRES"], r


def test_tables_equal_a_local_run(runs):
    on_slurm, local, _, _ = runs
    a_dir, b_dir = (w / "results" / "tiny" / "tables" for w in (on_slurm, local))
    names = sorted(p.name for p in b_dir.glob("*.csv"))
    assert "T1_main.csv" in names and sorted(p.name for p in a_dir.glob("*.csv")) == names
    for name in names:
        a, b = pd.read_csv(a_dir / name), pd.read_csv(b_dir / name)
        assert list(a.columns) == list(b.columns), name
        keep = [c for c in a.columns if not TIMING.search(c)]
        pd.testing.assert_frame_equal(a[keep], b[keep], check_exact=True, obj=name)


def test_scancel_mid_epoch_then_rerun_resumes_from_the_checkpoint(small, tmp_path):
    """One BP run on a larger data set (epochs of a few seconds): cancel its SLURM job once the
    first epoch's checkpoint is written, rerun the workflow, and check that the run resumed."""
    work, _ = small
    data = tmp_path / "data"
    write_mnist_like(data, "MNIST", 800, 5, seed=2)
    write_mnist_like(data, "FashionMNIST", 12, 5, seed=3)
    epochs = 4
    config = ("results=results/scancel", f"overrides={{all: {{epochs: {epochs}}}}}")
    run = work / "results" / "scancel" / "runs" / "main" / "bp-mnist-s0"
    target = str(run.relative_to(work) / "metrics.json")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(OMP_WAIT_POLICY="PASSIVE", MLFLOW_DISABLE_TELEMETRY="true", SBATCH_ACCOUNT=ACCOUNT)
    cmd = [sys.executable, "-m", "snakemake", "--profile", "profiles/slurm", target,
           "--config", "preset=tiny", f"data_root={data}", "data_mirrors=[]", "offline=true", *config]
    log = tmp_path / "first.log"
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=f, stderr=subprocess.STDOUT, text=True)
    try:
        jobid = None
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None:
            m = SUBMITTED.search(log.read_text())
            jobid = m.group(2) if m else None
            history = run / "history.csv"
            # one finished epoch: its checkpoint is on disk and the second epoch is running
            if jobid and history.is_file() and pd.read_csv(history)["epoch"].nunique() >= 1:
                subprocess.run(["scancel", jobid], check=True)
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"the job did not reach its second epoch in time:\n{log.read_text()[-3000:]}")
        # squeue reports the job CANCELLED; the workflow fails (next status check, <= 3 min)
        assert proc.wait(timeout=600) != 0, "the workflow should fail when its job is cancelled"
    finally:
        if proc.poll() is None:
            proc.kill()
    state = sacct([jobid], "JobID,State")[0]["State"]
    assert state.startswith("CANCELLED"), state
    # Snakemake removed the failed job's outputs (history.csv); the checkpoint is no declared output
    assert (run / "checkpoint.pt").is_file() and not (run / "metrics.json").exists()

    out = check(subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=900))
    second = SUBMITTED.findall(out)
    assert len(second) == 1 and sacct([second[0][1]], "JobID,State")[0]["State"] == "COMPLETED"
    train_log = (work / "results" / "scancel" / "logs" / "train" / "main" / "bp-mnist-s0.log").read_text()
    resumed = re.findall(r"resuming \S+ from \S+ after epoch (\d+)", train_log)  # the rerun's line
    assert len(resumed) == 1 and 1 <= int(resumed[0]) < epochs, train_log[-3000:]
    done = int(resumed[0])
    history = pd.read_csv(run / "history.csv")
    assert sorted(set(history["epoch"])) == list(range(1, epochs + 1)), history  # every epoch once per readout
    assert (run / "metrics.json").is_file()
    print(f"\nscancel: SLURM job {jobid} {state} after {done} of {epochs} epochs; rerun job {second[0][1]} "
          f"resumed after epoch {done} and COMPLETED")


def test_multi_gpu_run_is_one_torchrun_in_one_allocation(small):
    """A run with gpu=4: the dry run prints the torchrun command, and the real submission asks
    SLURM for 4 GPUs on one node (this cluster has none, so sbatch refuses it and Snakemake
    prints the sbatch call). Also shows that profiles/default's local `gpu=1` limit is lifted."""
    work, data = small
    target = "results/gpu/runs/main/bp-mnist-s0/metrics.json"
    config = ("results=results/gpu", "resources={gpu: 4, threads: 2, mem_mb: 1000, runtime: 10}")
    dry = check(snakemake(work, data, "-n", "--profile", "profiles/slurm", "--workflow-profile", "none",
                          "--cores", "64", target, config=config))
    assert "python -m torch.distributed.run --standalone --nproc_per_node 4 -m asge.train --request" in dry
    assert '"method": "bp"' in dry
    assert "--set threads=2" in dry and re.search(r"resources: .*nodes=1, gpu=4", dry), dry[-3000:]
    real = snakemake(work, data, "--profile", "profiles/slurm", target, config=config, timeout=300)
    out = real.stdout + real.stderr
    assert real.returncode != 0 and "SLURM sbatch failed" in out, out[-3000:]
    call = re.search(r"sbatch call:\s*\n\s*(sbatch .*)", out).group(1)
    print(f"\nmulti-GPU submission (refused here: no GPUs): {call}")
    for flag in ("--gpus=4", "--nodes=1", "--cpus-per-task=2", "--mem 1000", "-t 10", f"-A {ACCOUNT}"):
        assert flag in call, (flag, call)


def test_the_cluster_kills_a_job_over_its_memory_request(tmp_path):
    """Without enforcement, the memory requests above would pass here and fail on a real cluster."""
    hog = "import time; a = bytearray(600 * 2**20); time.sleep(20)"  # 600 MB touched (zero-filled)
    res = subprocess.run(["sbatch", "--parsable", "-A", ACCOUNT, "--mem", "200", "-t", "2", "-o", str(tmp_path / "hog.out"),
                          "--wrap", f"{sys.executable} -c '{hog}'"], capture_output=True, text=True, check=True)
    jobid = res.stdout.strip().split(";")[0]
    deadline = time.time() + 180
    state = {}
    while time.time() < deadline:
        rows = sacct([jobid], "JobID,State,ExitCode")  # none until slurmdbd has recorded the job
        state = rows[0] if rows else {}
        if state.get("State") not in (None, "PENDING", "RUNNING", "REQUEUED", ""):
            break
        time.sleep(2)
    else:
        pytest.fail(f"job {jobid} still running after 3 minutes: {state}")
    print(f"\nmemory enforcement: a job asking for 200 MB that uses 600 MB ended {state['State']} "
          f"(exit {state['ExitCode']})")
    # killed by SIGKILL (exit "0:9"), not failed for another reason; without enforcement: COMPLETED
    assert state["State"] in ("FAILED", "OUT_OF_MEMORY", "CANCELLED") and state["ExitCode"].endswith(":9"), state
