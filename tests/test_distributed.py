"""fit under torchrun: two CPU processes (gloo) train as one process with the whole batch would.

This file is also the training script that the tests start with torchrun (see `worker` at the end).
"""
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from sdlib.diffusion import DDPMObjective, band_timesteps
from sdlib.recipes.configs.ddpm import LESSON_T_BAND, LESSON_UNET
from sdlib.runtime import distributed
from sdlib.schedules import NoiseSchedule
from sdlib.train import LOG_EVERY, TrainConfig, batch_indices, fit, load_checkpoint
from sdlib.unet import UNet

pytestmark = pytest.mark.slow      # every test here starts processes (torchrun's gloo group)

HERE = Path(__file__).resolve()


def images(n=48):
    return (torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 2 - 1,)


def objective():
    # t from the lesson's band (torch.multinomial), ε from torch.randn: both are sharded draws
    return DDPMObjective(NoiseSchedule.linear(1000), t_probs=band_timesteps(1000, *LESSON_T_BAND))


def unet():
    torch.manual_seed(0)
    return UNet(replace(LESSON_UNET, channels=(8, 16), groups=4))      # the lesson-03 U-Net, narrower


def config(**kw):
    # the lesson's optimizer and memory layout; a constant learning rate, so that `steps` may grow on resume
    base = dict(steps=6, batch_size=8, lr=2e-3, warmup=2, lr_schedule="constant", optimizer="muon",
                channels_last="auto", ema_decay=0.9, checkpoint_every=None, seed=3, device="cpu")
    return TrainConfig(**{**base, **kw})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(folder: Path, world: int = 2) -> list[subprocess.Popen]:
    """Start `world` copies of this file's `worker` with the environment torchrun gives its workers
    (the agent process itself is left out: it only starts them and forwards signals)."""
    base = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent.parent), "WORLD_SIZE": str(world),
            "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    procs = []
    for rank in range(world):              # one process group of their own, as a terminal's foreground job
        procs.append(subprocess.Popen([sys.executable, str(HERE), str(folder)], stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, env={**base, "RANK": str(rank),
                                                                                "LOCAL_RANK": str(rank)},
                                      process_group=procs[0].pid if procs else 0))
    return procs


def close(a, b, what):
    for (name, x), y in zip(a.items(), b.values()):
        torch.testing.assert_close(x.float(), y.float(), rtol=1e-4, atol=1e-5, msg=lambda m: f"{what} {name}: {m}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process trains steps 0..8 (kept at steps 3 and 6); then two processes, started once, resume
    its step-3 checkpoint to step 6, start a second run that gets Ctrl-C, then a third with a time budget."""
    folder = tmp_path_factory.mktemp("ddp")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        path, kept = folder / "one.pt", {}
        straight = fit(unet(), objective(), images(), config(steps=8, checkpoint_every=3), checkpoint=path,
                       progress=False, on_step=lambda s, _: kept.update({s: path.read_bytes()}) if s in (3, 6) else None)
    finally:
        torch.set_num_threads(threads)
    (folder / "two.pt").write_bytes(kept[3])
    procs = launch(folder)
    try:
        deadline = time.time() + 100
        while not (folder / "running").exists() and time.time() < deadline and all(p.poll() is None for p in procs):
            time.sleep(0.1)
        if (folder / "running").exists():
            os.killpg(procs[0].pid, signal.SIGINT)              # Ctrl-C in a terminal: every process of the group
        outs = [p.communicate(timeout=60)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    try:
        os.killpg(procs[0].pid, 0)
        left = True
    except ProcessLookupError:
        left = False
    return {"folder": folder, "straight": straight, "kept": kept, "outs": outs,
            "codes": [p.returncode for p in procs], "left": left}


def test_two_processes_train_as_one_and_their_checkpoints_resume_across_process_counts(runs, tmp_path):
    folder, outs = runs["folder"], runs["outs"]
    assert runs["codes"] == [0, 0], outs
    assert "rank 0 finished 6" in outs[0] and "rank 1 finished 6" in outs[1]
    (tmp_path / "six.pt").write_bytes(runs["kept"][6])
    two, one = load_checkpoint(folder / "two.pt"), load_checkpoint(tmp_path / "six.pt")
    assert two["step"] == 6 and not any(k.startswith("module.") for k in two["model"])
    close(two["model"], one["model"], "weights")
    close(two["ema"]["model"], one["ema"]["model"], "EMA")
    torch.testing.assert_close(two["history"]["loss"], one["history"]["loss"], rtol=1e-4, atol=0)
    # One process resumes the two-process checkpoint at step 6, on the batch of step 6.
    seen = []

    def recording(model, batch, generator):
        seen.append(batch[0].clone())
        return objective()(model, batch, generator)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        resumed = fit(unet(), recording, images(), config(steps=8), checkpoint=folder / "two.pt", progress=False)
    finally:
        torch.set_num_threads(threads)
    assert resumed.steps == 8 and len(seen) == 2 and len(resumed.history["loss"]) == 8
    assert torch.equal(seen[0], images()[0][batch_indices(48, 8, 6, 3)])
    close(resumed.model.state_dict(), runs["straight"].model.state_dict(), "weights after the resume")


def test_ctrl_c_stops_both_processes_at_the_same_step_with_one_complete_checkpoint(runs):
    folder, outs = runs["folder"], runs["outs"]
    assert (folder / "running").exists() and runs["codes"] == [0, 0], outs
    stopped = [out.split("interrupted at ")[-1].split()[0] for out in outs if "interrupted at " in out]
    assert len(stopped) == 2 and stopped[0] == stopped[1], outs          # both ranks, the same step
    step = int(stopped[0])
    assert 0 < step < 100_000 and step % LOG_EVERY == 0                  # agreed at a logging interval
    assert load_checkpoint(folder / "run.pt")["step"] == step            # complete: its checksum holds
    assert not list(folder.glob("*.tmp"))
    assert not runs["left"]                                # nothing of the group outlives the run


def test_a_time_budget_stops_both_processes_at_the_same_step(runs):
    outs = runs["outs"]
    stopped = [out.split("out of time at ")[-1].split()[0] for out in outs if "out of time at " in out]
    assert len(stopped) == 2 and stopped[0] == stopped[1], outs          # one clock for both
    step = int(stopped[0])
    assert 0 < step < 100_000 and step % LOG_EVERY == 0
    state = load_checkpoint(runs["folder"] / "budget.pt")
    assert state["step"] == step and state["seconds"] >= 0.02 * 60


def test_a_global_batch_that_the_processes_do_not_share_evenly_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="batch_size=7 is the global batch, shared by 2 processes"):
        fit(unet(), objective(), images(), config(batch_size=7), progress=False)
    with pytest.raises(ValueError, match="at least 2"):
        distributed.local_batch(3, 3)
    assert distributed.local_batch(12, 3) == 4 and distributed.local_batch(5, 1) == 5


def test_sharded_draws_are_rows_of_the_draws_of_the_whole_batch():
    def draws(b, g):
        return (torch.randint(1, 1001, (b,), generator=g), torch.rand(b, 4, generator=g),
                torch.randn((b, 1, 2, 2), generator=g), torch.multinomial(torch.ones(5), b, True, generator=g),
                torch.randint(0, 2**62, (1,), generator=g))                        # a seed: not per sample

    whole = draws(6, torch.Generator().manual_seed(0))
    for rank in range(3):
        shard = distributed.Shard(rank=rank, world=3, device=torch.device("cpu"), owns_group=False)
        with distributed.ShardedDraws(shard, 6):
            part = draws(2, torch.Generator().manual_seed(0))
        for x, y in zip(whole[:4], part[:4]):
            assert torch.equal(x[2 * rank:2 * rank + 2], y)
        assert torch.equal(whole[4], part[4])
        with distributed.ShardedDraws(shard, 6), pytest.raises(RuntimeError, match="cannot be shared"):
            torch.zeros(2, 3).uniform_(generator=torch.Generator())


def worker(folder: str) -> None:
    """Started twice by `launch`, as torchrun would: every process calls fit the same way."""
    torch.set_num_threads(1)
    rank, folder = int(os.environ["RANK"]), Path(folder)
    result = fit(unet(), objective(), images(), config(steps=6), checkpoint=folder / "two.pt", progress=False)
    print(f"rank {rank} finished {result.steps}", flush=True)

    def slow(model, batch, generator):          # give the test time to press Ctrl-C mid-run
        time.sleep(0.01)
        if rank == 0 and not (folder / "running").exists():
            (folder / "running").touch()
        return objective()(model, batch, generator)

    result = fit(unet(), slow, images(), config(steps=100_000, checkpoint_every=5), checkpoint=folder / "run.pt",
                 progress=False)
    print(f"rank {rank} " + (f"interrupted at {result.steps}" if result.interrupted else "finished"), flush=True)
    result = fit(unet(), objective(), images(), config(steps=100_000, max_minutes=0.02, checkpoint_every=5,
                                                       lr_schedule="cosine"), checkpoint=folder / "budget.pt",
                 progress=False)
    print(f"rank {rank} " + (f"out of time at {result.steps}" if result.out_of_time else "finished"), flush=True)


if __name__ == "__main__":
    # Ctrl-C as in a terminal's foreground job, even when the test run was started in the background (whose
    # commands a shell without job control starts with SIGINT ignored, and its children inherit that)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    worker(*sys.argv[1:])
    # Every check above is done and printed. Leave without the interpreter's teardown: in this harness rank 0
    # hosts the rendezvous store itself (torchrun's agent would), and tearing that store down while rank 1 is
    # still attached can abort the process ("terminate called without an active exception") after the work.
    sys.stdout.flush()
    os._exit(0)
