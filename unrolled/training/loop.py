"""The training loop: forward, loss, backward, clip, step, carry the state, evaluate, save.

The loop knows nothing about any task. A task hands it

- ``data``: a sequence of ``(x, y)`` chunks making up one epoch, in order (if it has a
  ``set_epoch(n)`` method, it is called before each step so that it can reorder itself per
  epoch, by the epoch's number); ``x`` may be a tuple (e.g. tokens and lengths); when chunks are
  consecutive pieces of long streams (truncated BPTT) the recurrent state is carried from one
  chunk to the next and detached there, and reset at the start of every epoch;
- ``loss_fn(model, x, y, state) -> (mean loss, new state, tokens)`` (tokens: an int, or a tensor
  on the device, read together with the loss);
- ``evaluate(model) -> {"val_loss": ..., ...}``, whose ``val_loss`` (or another metric named by
  ``select``, e.g. the highest ``val_bleu``) picks the best weights.

Every validation commits a checkpoint (weights, optimizer, RNG, carried state, position; see
:mod:`unrolled.training.checkpoint`) and every ``log_every`` steps a record goes to
``metrics.jsonl``, with the gradient norm before clipping. A loss or gradient norm that is NaN or
infinite never reaches the weights: the step is skipped (``on_nonfinite="skip"``, counted) or the
run stops with :class:`Diverged`, leaving the last checkpoint as it was. The run also stops, never
skipping, when an update leaves a weight or a tensor of the optimizer's state non-finite, when the
optimizer's step raises (a value beyond float32), and when a validation figure passes the task's
:class:`Bound` of knowing nothing (e.g. 3 x ln V for a softmax over V classes): a run that
diverges to huge but finite losses does not "succeed". Checking costs two waits for the device per
step. Ctrl-C stops at the end of the current step and saves.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..cells.base import map_state, state_tensors
from ..errors import Diverged, NonFiniteOutput
from . import checkpoint as ckpt
from . import distributed
from .config import LoopConfig, OptimConfig
from .device import autocast_dtype, model_device, to_device
from .tensorboard import TensorBoardWriter

log = logging.getLogger(__name__)

# (model, x, y, carried state) -> (mean loss, new state, tokens); x may be a tuple (tokens, lengths);
# tokens may be a tensor on the device (no host sync: it is read with the loss, once per step)
LossFn = Callable[[nn.Module, Any, Tensor, Any], tuple[Tensor, Any, "int | Tensor"]]
EvalFn = Callable[[nn.Module], dict[str, float]]
EventFn = Callable[[str, dict[str, Any]], None]


@dataclass
class TrainerState:
    """Where a run stands; saved as ``trainer_state.json``."""

    step: int = 0  # optimizer steps taken over the whole run
    epoch: int = 0  # completed passes over the training chunks
    chunk: int = 0  # index of the next chunk within the current epoch
    tokens: int = 0  # training tokens seen
    elapsed: float = 0.0  # seconds spent training, over all invocations
    best_val: float | None = None  # the best value of the selecting metric (val_loss unless a task says)
    best_step: int | None = None
    best_tie: float | None = None  # the best's tie-breaking metric, if the task names one
    last_val: float | None = None
    skipped: int = 0  # steps skipped for a non-finite loss or gradient norm (on_nonfinite="skip")
    world_size: int = 1  # processes that trained the run (torchrun); a resume needs as many
    val_history: list[float] = field(default_factory=list)  # --average nt: every validation, in order
    averaged_steps: int = 0  # --average nt: steps in the running average of the weights (0: not started)


MAX_SKIPS_IN_A_ROW = 100  # past this many non-finite steps in a row, even "skip" stops the run


def make_optimizer(
    model: nn.Module, optim: OptimConfig, groups: Sequence[Sequence[nn.Parameter]] | None = None
) -> torch.optim.Optimizer:
    """``--optimizer``: AdamW (decoupled weight decay) or plain SGD (weight decay as L2); with
    ``groups`` (every parameter of ``model`` in exactly one), one parameter group each."""
    params: Any = model.parameters()
    if groups is not None:
        seen = [id(p) for g in groups for p in g]
        if sorted(seen) != sorted(id(p) for p in model.parameters()):
            raise ValueError("the parameter groups must hold every parameter of the model exactly once")
        params = [{"params": list(g)} for g in groups]
    if optim.optimizer == "sgd":
        return torch.optim.SGD(params, lr=optim.lr, weight_decay=optim.weight_decay)
    return torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay)


@dataclass(frozen=True)
class Bound:
    """The validation figure of a model that knows nothing: beyond ``factor`` times it (``--diverge-
    factor`` overrides the task's), a run has diverged, however finite its numbers."""

    metric: str  # the validation metric it bounds, e.g. "val_loss"
    chance: float  # its value for a model that knows nothing, e.g. ln V for a softmax over V
    what: str  # how that value comes about, for the message: "ln 65 (a uniform guess over 65 characters)"
    factor: float = 3.0  # the task's default multiple


def _launcher(world_size: int) -> str:
    return "plain `unrolled train`" if world_size == 1 else f"torchrun --nproc-per-node {world_size}"


def _json_number(value: Any) -> Any:
    return str(value) if isinstance(value, float) and not math.isfinite(value) else value


def detach_state(state: Any) -> Any:
    """Cut the graph at a chunk boundary (truncated BPTT), keeping the values."""
    return None if state is None else map_state(Tensor.detach, state)


class Trainer:
    """Runs the loop described in the module docstring. See :meth:`run`."""

    def __init__(
        self,
        model: nn.Module,
        data: Sequence[tuple[Tensor, Tensor]],
        loss_fn: LossFn,
        evaluate: EvalFn,
        optim: OptimConfig,
        loop: LoopConfig,
        run_dir: Path,
        *,
        carry_state: bool = True,
        on_event: EventFn | None = None,
        make_state: Callable[[list[Tensor]], Any] | None = None,
        select: tuple[str, ...] = ("val_loss", "min"),
        bound: Bound | None = None,
        groups: Sequence[Sequence[nn.Parameter]] | None = None,
        lr_scales: Callable[[int], Sequence[float]] | None = None,
    ) -> None:
        if len(data) == 0:
            raise ValueError("no training chunks: the training text is too short for one batch")
        self.model = model
        self.data = data
        self.loss_fn = loss_fn
        self.evaluate = evaluate
        self.optim_cfg = optim
        self.loop = loop
        self.run_dir = Path(run_dir)
        self.carry_state = carry_state
        # (metric of evaluate(), "min" or "max"[, a metric whose lowest value breaks ties]): which
        # weights are the best
        self.select = select
        self.bound = bound  # a validation beyond it is divergence (see Bound)
        if len(select) not in (2, 3) or select[1] not in ("min", "max"):
            raise ValueError(f"select must be (metric, 'min' or 'max'[, tie-break metric]), got {select}")
        self.on_event = on_event or (lambda kind, record: None)
        self.make_state = make_state or (lambda parts: parts[0] if len(parts) == 1 else tuple(parts))
        self.device = model_device(model)  # batches and the carried state go where the model is
        # mixed precision: the forward passes (loss and validation) under autocast; fp16 scales the
        # loss so that small gradients survive, and its scaler skips steps whose gradients overflow
        self.amp_dtype = autocast_dtype(optim.precision, self.device)
        if optim.precision == "auto":
            log.info("--precision auto on %s: %s", self.device, "bf16" if self.amp_dtype else "fp32")
        self.scaler = torch.amp.GradScaler(self.device.type) if optim.precision == "fp16" else None
        self.optimizer = make_optimizer(model, optim, groups)
        # epoch -> each parameter group's multiple of the learning rate (0: frozen that epoch)
        self.lr_scales = lr_scales or (lambda epoch: [1.0] * len(self.optimizer.param_groups))
        # torchrun: each rank trains a DistributedDataParallel copy on its rows of every batch
        self.world = distributed.current()
        self.main = self.world is None or self.world.main  # rank 0 writes, logs and decides to stop
        if not self.main:
            self.on_event = lambda kind, record: None
        self.net: nn.Module = model
        if self.world is not None:
            for index in range(len(data)):  # a shuffled epoch may put a short batch anywhere
                distributed.shard(data[index], self.world)  # raises if one does not split evenly
            ids = None if self.device.type == "cpu" else [self.device]
            self.net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.state = TrainerState(world_size=1 if self.world is None else self.world.size)
        self.carry: Any = None
        self._stop_requested = False
        self._eval_seconds = 0.0  # duration of the last validation + checkpoint
        self._skips_in_a_row = 0
        self._saved_step: int | None = None  # step of the last committed checkpoint
        self._tensorboard: TensorBoardWriter | None = None
        self.average: list[Tensor] = []  # --average nt: the running mean of each parameter, once started

    # ---- resume ---------------------------------------------------------------------------
    def load(self) -> None:
        """Restore weights, optimizer, RNG, carried state and position from the last checkpoint."""
        weights, extra, raw = ckpt.load_checkpoint(self.run_dir)
        try:
            state = TrainerState(**raw)
        except TypeError as e:
            raise ValueError(f"trainer state in {str(self.run_dir)!r} is not valid: {e}") from None
        if state.world_size != self.state.world_size:
            raise ValueError(
                f"{str(self.run_dir)!r} was trained by {state.world_size} process(es), this is "
                f"{self.state.world_size}: resume it with {_launcher(state.world_size)} (the carried "
                "state and the data order are split that way)"
            )
        self.model.load_state_dict(weights)  # the average, when averaging had started: then ...
        if "average" in extra:  # ... training goes on from the training weights
            self.average = [t.to(self.device) for t in extra["average"]]
            with torch.no_grad():
                for p, r in zip(self.model.parameters(), extra["raw_weights"], strict=True):
                    p.copy_(r)
        self.optimizer.load_state_dict(extra["optimizer"])  # its tensors go to the parameters' device
        rank = 0 if self.world is None else self.world.rank
        rngs, cuda_rngs = (
            extra.get("rng_ranks", [extra["rng"]]),
            extra.get("cuda_rng_ranks", [extra.get("cuda_rng")]),
        )
        torch.set_rng_state(rngs[rank])  # each rank its own stream (the same world size: checked above)
        cuda_rng = cuda_rngs[rank] if rank < len(cuda_rngs) else None  # None: saved on a CPU
        if self.device.type == "cuda" and cuda_rng is not None:  # dropout on the GPU: the same masks again
            torch.cuda.set_rng_state(cuda_rng, self.device)
        if self.scaler is not None and "scaler" in extra:
            self.scaler.load_state_dict(extra["scaler"])
        carry = extra.get("carry")
        if carry is not None:
            parts = [t.to(self.device) for t in carry]
            if self.world is not None:  # saved whole; this rank's streams (batch-second states)
                parts = [
                    distributed.shard(t.transpose(0, 1), self.world).transpose(0, 1).contiguous()
                    for t in parts
                ]
            self.carry = self.make_state(parts)
        else:
            self.carry = None
        self.state = state
        self._saved_step = state.step
        if self.main:
            self._trim_metrics(state.step)

    def _trim_metrics(self, step: int) -> None:
        """Drop the records of steps after the checkpoint (they will be trained again) and a line
        cut short by a crash, so that metrics.jsonl tells one history."""
        path = self.run_dir / ckpt.METRICS
        if not path.exists():
            return
        kept = []
        for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
            try:
                record = json.loads(line) if line.endswith("\n") else None
            except json.JSONDecodeError:
                record = None
            if isinstance(record, dict) and record.get("step", 0) <= step:
                kept.append(line)
        ckpt.atomic_write_bytes(path, "".join(kept).encode("utf-8"))

    # ---- saving ---------------------------------------------------------------------------
    def save(self, best: bool = False, raw: list[Tensor] | None = None) -> None:
        """Commit a checkpoint of this step (``best``: its weights are the best so far; ``raw``: the
        training weights when the model holds their average; once averaging has started, both are
        kept for a resume).

        Weights that overflowed to Inf/NaN (an update that was finite but too large) are never
        saved: that is :class:`Diverged`, and the previous checkpoint stays.
        """
        finite = [torch.isfinite(p.detach()).all() for p in self.model.parameters()]
        if finite and not bool(torch.stack(finite).all()):  # one wait for the device
            raise Diverged(self.state.step, "the weights are no longer finite", self._saved_step)
        carry = None if self.carry is None else state_tensors(self.carry)
        if carry is not None and self.world is not None:  # every rank's streams, in order (batch-second)
            carry = [distributed.gather_rows(t, dim=1) for t in carry]
        rngs = [torch.get_rng_state()]
        if self.device.type == "cuda":
            rngs.append(torch.cuda.get_rng_state(self.device))
        if self.world is not None:  # each rank draws its own dropout masks: keep every rank's stream
            rngs = [distributed.gather_bytes(r, self.device) for r in rngs]
        if not self.main:
            self._saved_step = self.state.step
            return
        resume = {
            "optimizer": self.optimizer.state_dict(),
            "rng": rngs[0][0] if self.world is not None else rngs[0],
            "carry": None if carry is None else [t.cpu() for t in carry],
        }
        if self.world is not None:
            resume["rng_ranks"] = rngs[0]
        if self.device.type == "cuda":
            resume["cuda_rng"] = rngs[1][0] if self.world is not None else rngs[1]
            if self.world is not None:
                resume["cuda_rng_ranks"] = rngs[1]
        if self.scaler is not None:
            resume["scaler"] = self.scaler.state_dict()
        if self.state.averaged_steps:  # the model holds the average (or, just started, equals it)
            training = raw if raw is not None else [p.detach() for p in self.model.parameters()]
            resume["raw_weights"] = [t.cpu().clone() for t in training]
            resume["average"] = [t.detach().cpu().clone() for t in self.average]
        try:
            ckpt.commit(
                self.run_dir, self.state.step, self.model.state_dict(), resume, asdict(self.state), best=best
            )
        except OSError as e:  # a full disk, a folder gone read-only: the previous commit is whole
            kept = "" if self._saved_step is None else f"; the checkpoint of step {self._saved_step} is kept"
            raise OSError(
                f"could not save the checkpoint of step {self.state.step} in {str(self.run_dir)!r} "
                f"({e.strerror or e}){kept}: make room (or fix the folder) and resume"
            ) from None
        self._saved_step = self.state.step

    def _log(self, kind: str, record: dict[str, Any]) -> None:
        if not self.main:
            return
        # strict JSON has no NaN/Infinity: a non-finite number is written as a string ("nan", "inf")
        record = {"kind": kind, **{k: _json_number(v) for k, v in record.items()}}
        with open(self.run_dir / ckpt.METRICS, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self._tensorboard is not None:
            self._tensorboard(kind, record)
        self.on_event(kind, record)

    # ---- schedule -------------------------------------------------------------------------
    def lr_at(self, step: int, elapsed: float, plan_steps: int | None, plan_seconds: float | None) -> float:
        """Learning rate for ``step``: warm-up, then constant or cosine to the planned end.

        The planned end is the nearer of the step and the time limit, so a run stopped by
        ``--max-minutes`` still ends its schedule at the floor.
        """
        o = self.optim_cfg
        warm = min(1.0, (step + 1) / o.warmup_steps) if o.warmup_steps else 1.0
        if o.schedule == "constant":
            return o.lr * warm
        fractions = []
        if plan_steps:
            fractions.append(step / plan_steps)
        if plan_seconds:
            fractions.append(elapsed / plan_seconds)
        p = min(1.0, max(fractions)) if fractions else 0.0
        r = o.min_lr_ratio
        return o.lr * warm * (r + (1 - r) * 0.5 * (1 + math.cos(math.pi * p)))

    # ---- the loop -------------------------------------------------------------------------
    def run(self) -> TrainerState:
        """Train until a limit of ``LoopConfig`` is reached (or Ctrl-C); return the final state."""
        loop, st = self.loop, self.state
        plan_steps = None if loop.max_steps is None else st.step + loop.max_steps
        if loop.max_epochs is not None:
            epoch_steps = st.step + math.ceil(loop.max_epochs * len(self.data))
            plan_steps = epoch_steps if plan_steps is None else min(plan_steps, epoch_steps)
        budget = None if loop.max_minutes is None else loop.max_minutes * 60.0
        plan_seconds = None if budget is None else st.elapsed + budget

        t0 = time.perf_counter()
        elapsed0 = st.elapsed
        window_tokens, window_t = 0, t0
        last_eval_step = st.step if st.last_val is not None else -1
        previous_handler = self._install_sigint()
        if loop.tensorboard and self.main:
            self._tensorboard = TensorBoardWriter(self.run_dir)
        self.on_event(
            "start",
            {"step": st.step, "elapsed": st.elapsed, "plan_steps": plan_steps, "plan_seconds": plan_seconds},
        )
        try:
            while True:
                now = time.perf_counter()
                st.elapsed = elapsed0 + (now - t0)
                # stop early enough that the final validation fits in the budget too
                out_of_time = budget is not None and now - t0 + self._eval_seconds >= budget
                stop = (
                    (plan_steps is not None and st.step >= plan_steps)
                    or out_of_time
                    or self._stop_requested
                    or self._out_of_patience()  # a run resumed after its patience ran out: no more steps
                )
                if self.world is not None:  # rank 0's clock and decision, on every rank
                    stop, st.elapsed = distributed.agree(stop, st.elapsed, self.device)
                if stop:
                    if self._stop_requested:
                        log.info("stopping at step %d on request", st.step)
                    break
                lr = self.lr_at(st.step, st.elapsed, plan_steps, plan_seconds)
                loss, grad_norm, tokens = self._train_step(lr)
                window_tokens += tokens
                if st.step % loop.log_every == 0:
                    t = time.perf_counter()
                    self._log(
                        "train",
                        {
                            "step": st.step,
                            "epoch": st.epoch,
                            "loss": loss,
                            "lr": lr,
                            "grad_norm": grad_norm,
                            "tokens_per_s": window_tokens / max(t - window_t, 1e-9),
                            "skipped": st.skipped,
                            "elapsed": st.elapsed,
                        },
                    )
                    window_tokens, window_t = 0, t
                if st.step % loop.eval_every == 0:
                    self._validate_and_save()
                    last_eval_step = st.step
                    patience_over = self._out_of_patience()
                    if self.world is not None:
                        patience_over, _ = distributed.agree(patience_over, 0.0, self.device)
                    if patience_over:
                        log.info(
                            "stopping early at step %d: no better %s since step %d (%d checks)",
                            st.step,
                            self.select[0],
                            st.best_step,
                            loop.patience,
                        )
                        break
            st.elapsed = elapsed0 + (time.perf_counter() - t0)
            if last_eval_step != st.step:
                self._validate_and_save()
        except Diverged as e:  # the record says why the run stopped (unrolled serve shows it)
            self._log("diverged", {"step": e.step, "problem": e.problem, "last_saved": self._saved_step})
            raise
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
            if self._tensorboard is not None:
                self._tensorboard.close()
                self._tensorboard = None
        self.on_event("end", asdict(st))
        return st

    def _out_of_patience(self) -> bool:
        """``patience`` validations in a row without a new best (counted from the steps, so resume-safe)."""
        st, patience = self.state, self.loop.patience
        return (
            patience is not None
            and st.best_step is not None
            and (st.step - st.best_step >= patience * self.loop.eval_every)
        )

    def _train_step(self, lr: float) -> tuple[float, float, int]:
        """One step; returns (loss, gradient norm before clipping, tokens), both numbers finite."""
        st = self.state
        if st.chunk == 0:
            self.carry = None  # a new epoch starts every stream afresh
        if hasattr(self.data, "set_epoch"):  # data that reshuffles per epoch (resume-safe: by number)
            self.data.set_epoch(st.epoch)
        x, y = to_device(self.data[st.chunk], self.device)
        if self.world is not None:
            x, y = distributed.shard((x, y), self.world)
        self.model.train()
        with self.autocast():
            loss, new_state, tokens = self.loss_fn(self.net, x, y, self.carry if self.carry_state else None)
        self.optimizer.zero_grad(set_to_none=True)
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)  # the true gradients, for the norm and clipping
        clip = self.optim_cfg.clip if self.optim_cfg.clip > 0 else math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)  # the norm before clipping
        count = tokens.to(norm) if isinstance(tokens, Tensor) else norm.new_tensor(float(tokens))
        numbers = torch.stack([loss.detach().float(), norm.float(), count.reshape(())])
        if self.world is not None:  # the global batch: mean loss, all tokens (the norm is the same)
            numbers = distributed.mean(numbers) * numbers.new_tensor([1.0, 1.0, self.world.size])
        loss_value, norm_value, total = numbers.tolist()
        tokens = round(total)
        # fp16: an overflowing gradient is the scaler's business (it skips the step, lowers the scale)
        finite = math.isfinite(loss_value) and (math.isfinite(norm_value) or self.scaler is not None)
        if finite:
            scales = self.lr_scales(st.epoch)
            for group, scale in zip(self.optimizer.param_groups, scales, strict=True):
                group["lr"] = lr * scale
            try:
                if self.scaler is None:
                    self.optimizer.step()
                else:
                    self.scaler.step(self.optimizer)  # skipped by the scaler when the gradients overflowed,
                    self.scaler.update()  # which the norm of the unscaled gradients already says
            except (RuntimeError, ValueError, OverflowError) as e:  # e.g. a value beyond float32
                problem = f"the optimizer's step failed ({' '.join(str(e).split())})"
                raise Diverged(st.step + 1, problem, self._saved_step) from None
            self._check_updated(st.step + 1)
            if st.averaged_steps:
                self._accumulate_average()
            if self.scaler is None or math.isfinite(norm_value):
                self._skips_in_a_row = 0
            else:
                self._scaler_skipped(norm_value)
            self.carry = detach_state(new_state) if self.carry_state else None
        else:
            self._nonfinite(loss_value, norm_value)
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.update()  # unscale_ has run: the scaler expects an update before the next step
            self.carry = None  # a state that produced NaN is not carried on
        st.step += 1
        st.tokens += tokens
        st.chunk += 1
        if st.chunk == len(self.data):
            st.chunk, st.epoch = 0, st.epoch + 1
        return loss_value, norm_value, tokens

    def _check_updated(self, step: int) -> None:
        """After an update: every weight and every tensor of the optimizer's state must be finite (a
        finite gradient times a huge learning rate overflows). One wait for the device; never skipped."""
        params = [p.detach() for p in self.model.parameters()]
        state = self.optimizer.state.values()
        moments = [t for st in state for t in st.values() if isinstance(t, Tensor) and t.dim() > 0]
        checks = [torch.isfinite(t).all() for t in params + moments]
        if not checks or bool(torch.stack(checks).all()):
            return
        what = "weights" if not bool(torch.stack(checks[: len(params)]).all()) else "optimizer's moments"
        raise Diverged(step, f"the {what} are no longer finite after the update", self._saved_step)

    def autocast(self) -> Any:
        """The autocast context of ``--precision`` (off for fp32): forward passes run under it."""
        enabled = self.amp_dtype is not None
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=enabled)

    def _scaler_skipped(self, norm: float) -> None:
        """fp16: the scaler skipped an overflowing step (normal now and then; not divergence)."""
        st = self.state
        self._skips_in_a_row += 1
        st.skipped += 1
        if self._skips_in_a_row > MAX_SKIPS_IN_A_ROW:
            problem = f"the gradients overflowed fp16 {self._skips_in_a_row} times in a row"
            raise Diverged(st.step + 1, problem, self._saved_step)
        self._log(
            "nonfinite", {"step": st.step + 1, "grad_norm": norm, "skipped": st.skipped, "by": "scaler"}
        )

    def _nonfinite(self, loss: float, norm: float) -> None:
        """Stop (the default) or count a skipped step; never touches the weights."""
        st = self.state
        what, value = ("loss", loss) if not math.isfinite(loss) else ("gradient norm", norm)
        self._skips_in_a_row += 1
        if self.loop.on_nonfinite == "stop" or self._skips_in_a_row > MAX_SKIPS_IN_A_ROW:
            raise Diverged(st.step + 1, f"the {what} is {value}", self._saved_step, skippable=True)
        st.skipped += 1
        log.warning("step %d: the %s is %s: step skipped (%d so far)", st.step + 1, what, value, st.skipped)
        self._log("nonfinite", {"step": st.step + 1, "loss": loss, "grad_norm": norm, "skipped": st.skipped})

    # ---- weight averaging (--average nt) ------------------------------------------------------
    def _accumulate_average(self) -> None:
        """Add this step's weights to the running mean: ``avg += (w - avg) / n``."""
        st = self.state
        st.averaged_steps += 1
        with torch.no_grad():
            for avg, p in zip(self.average, self.model.parameters(), strict=True):
                avg.add_(p.detach() - avg, alpha=1.0 / st.averaged_steps)

    def _maybe_start_averaging(self, val: float) -> None:
        """AWD-LSTM's non-monotone trigger: a validation worse than the best of all but the last
        ``--average-window`` before it starts the average (from this step's weights)."""
        st, window = self.state, self.optim_cfg.average_window
        history = st.val_history[:-1]  # the ones before this validation
        if st.averaged_steps or len(history) <= window or not val > min(history[:-window]):
            return
        self.average = [p.detach().clone() for p in self.model.parameters()]
        st.averaged_steps = 1
        self._log("average", {"step": st.step, "val_loss": val, "elapsed": st.elapsed})

    @contextlib.contextmanager
    def _averaged(self) -> Any:
        """Within the block the model holds the averaged weights (if averaging has started)."""
        if not self.state.averaged_steps:
            yield None
            return
        raw = [p.detach().clone() for p in self.model.parameters()]
        with torch.no_grad():
            for p, avg in zip(self.model.parameters(), self.average, strict=True):
                p.copy_(avg)
        try:
            yield raw
        finally:
            with torch.no_grad():
                for p, r in zip(self.model.parameters(), raw, strict=True):
                    p.copy_(r)

    def _validate_and_save(self) -> None:
        with self._averaged() as raw:
            self._validate_and_save_weights(raw)

    def _validate_and_save_weights(self, raw: list[Tensor] | None) -> None:
        """Validate the model's weights and save them (``raw``: the training weights, when the model
        holds the average: saved beside it, for a resume to go on training from)."""
        st = self.state
        started = time.perf_counter()
        self.model.eval()
        with torch.no_grad():
            with self.autocast():
                try:
                    metrics = self.evaluate(self.model)
                except NonFiniteOutput as e:  # e.g. the translator's decoding: the step says when
                    problem = f"the validation's {e.problem} are not finite"
                    raise Diverged(st.step, problem, self._saved_step) from None
        loss = metrics["val_loss"]
        if not math.isfinite(loss):  # the weights are finite, yet the model has diverged: stop
            raise Diverged(st.step, f"the validation loss is {loss}", self._saved_step)
        self._check_bound(metrics)
        key, mode, *tie = self.select
        val = float(metrics[key])
        tie_val = float(metrics[tie[0]]) if tie else None
        st.last_val = val
        improved = st.best_val is None or (val > st.best_val if mode == "max" else val < st.best_val)
        if tie_val is not None and val == st.best_val and st.best_tie is not None:
            improved = tie_val < st.best_tie  # as good: the lower tie-breaking metric wins
        if improved:
            st.best_val, st.best_step, st.best_tie = val, st.step, tie_val
        if self.optim_cfg.average == "nt":
            st.val_history.append(float(loss))
            self._maybe_start_averaging(float(loss))  # before the save: a resume sees it started
        self.save(best=improved, raw=raw)
        self._eval_seconds = time.perf_counter() - started
        self._log(
            "val", {"step": st.step, "epoch": st.epoch, **metrics, "best": improved, "elapsed": st.elapsed}
        )

    def _check_bound(self, metrics: dict[str, float]) -> None:
        """A validation figure beyond the task's bound of knowing nothing: diverged (before any save)."""
        b = self.bound
        if b is None or b.metric not in metrics:
            return
        factor = self.loop.diverge_factor or b.factor
        value = float(metrics[b.metric])
        if not value <= factor * b.chance:
            name = b.metric.removeprefix("val_").replace("_", " ")
            problem = (
                f"the validation {name} is {value:.6g}, above {factor:g} x {b.what} = "
                f"{factor * b.chance:.4g}: worse than knowing nothing (--diverge-factor sets the multiple)"
            )
            raise Diverged(self.state.step, problem, self._saved_step)

    def _install_sigint(self) -> Any:
        """First Ctrl-C: finish the step, save, stop. Second: stop at once."""
        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum: int, frame: Any) -> None:
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True
            log.warning("interrupted: finishing this step and saving (Ctrl-C again to abort)")

        previous = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, handler)
        return previous
