"""Successive halving over the training schedule at the real budget (issue 16, part 3).

:func:`halving_search` picks the best (conv_bits, dw_bits) at one Eq. (6) budget
like :func:`tfq_pareto.search.dual_precision_search`'s grid, for a fraction of
its training: every pair starts the *same* schedule the grid trains with
(same recipe, same warm-up and cosine decay over the same number of steps) and
is ranked after a first fraction of it (a *rung*); only the best ``1 / eta`` go
on to the next rung, and the last ones left finish the schedule. A pair that
goes on resumes from its checkpoint (weights, momentum, step), so no step is
trained twice and the survivor's model is a complete training of the recipe.

Why not keras-tuner's Hyperband oracle: it counts in whole epochs and runs
every bracket, the last of which trains every pair for the whole schedule;
on a short schedule (3 epochs here) its cheapest rung is already an epoch per
pair, more than the whole search may cost (see BENCHMARKS.md, "Search cost on
ResNet-20"). Rungs here are fractions of the schedule, counted in steps.

A pair retraces the grid's trial of the same pair and seed
(:func:`tfq_pareto.experiment.run`) step for step: the same initial weights
(drawn in the same order: the grid's run builds a float model before the one it
trains, and so does a pair) and the same batches (the grid's pipeline and seeds;
a pair resumed at a rung skips the batches it trained instead of starting a new
shuffle). So a finished pair's accuracy is the grid trial's, and a search can be
set against a grid of the same seeds pair by pair. Only a grid trial itself
resumed after a crash departs from this (Keras's BackupAndRestore restarts its
epoch's shuffle). Searches run before this (BENCHMARKS.md, "Successive halving at
the budget") drew other initial weights and shuffles; their picks' accuracies
differ from the grid's trials of the same seed by 1.38 to 5.78 points.

A rung ranks what the pairs reached under a learning rate still high; on the
training floor's grid the order there changes from epoch to epoch and settles only
once the rate has decayed (BENCHMARKS.md, "Where the order settles"). ``anneal``
adds a *probe* before each rung's ranking: a copy of every pair's state trains a
further ``anneal`` of the schedule's steps with the learning rate brought linearly
from its value at the rung down to 0 (:class:`tfq_pareto.training.LinearAnneal`),
on the batches that come next, and is evaluated; the pairs are ranked on those
accuracies. The probe is thrown away: a pair that goes on resumes from its
checkpoint at the rung, so it still retraces the grid's trial. The probe's steps
count in the search's cost (``steps["probe"]``). This departs from plain
successive halving (Jamieson & Talwalkar, 2016), which ranks the models as they
are; it borrows the idea of evaluating a model at a low learning rate that
early-stopping and NAS work uses, measured in BENCHMARKS.md on ResNet-20.

Writes into ``out_dir``: ``halving.json`` (the state, rewritten after every
pair's rung: a rerun with the same arguments resumes and trains nothing twice),
``pairs/<c>_<d>/seed_<s>/`` (checkpoints; the survivors' ``model.h5``) and
``results.json``.
"""

import dataclasses
import glob
import json
import math
import os
import time

import tensorflow as tf

from tfq_pareto import checks, data, experiment, training
from tfq_pareto.backend import keras
from tfq_pareto.records import TrialRecord, combine_seeds, jsonable, sample_std
from tfq_pareto.saving import save_model
from tfq_pareto.scheme import apply
from tfq_pareto.search.front import pooled_std
from tfq_pareto.size import model_size

#: The state file of a halving search (resumable).
STATE_JSON = "halving.json"
RESULTS_JSON = "results.json"

#: Default rungs: a ninth and a third of the schedule (the classic geometric
#: spacing of successive halving with eta = 3). On a very short schedule the first
#: rung may come too early to rank: on the 3-epoch CIFAR-10 benchmark, 20 steps
#: (a sixth) left ResNet-20 at chance in a first try, so that benchmark ranks once,
#: at a third (``rungs=(1 / 3,)``).
DEFAULT_RUNGS = (1 / 9, 1 / 3)


def _cut(ranked, kept, means, stds):
    """Whether a rung's cut is beyond the seed spread: the last pair kept against the first
    dropped, their mean difference and pooled seed std (None with one seed, or when the rung
    dropped nothing)."""
    if kept >= len(ranked):
        return None
    last, first_out = ranked[kept - 1][0], ranked[kept][0]
    margin = means[last] - means[first_out]
    spread = pooled_std(stds[last], stds[first_out])
    return {"kept": pair_label(*last), "dropped": pair_label(*first_out), "margin": margin,
            "pooled_std": spread, "beyond_spread": None if spread is None else margin > spread}


def check_rungs(rungs):
    """``rungs`` as a list of floats, strictly increasing in (0, 1); a clear error otherwise."""
    try:
        values = [float(r) for r in rungs]
    except (TypeError, ValueError) as err:
        raise ValueError(f"rungs must be fractions of the schedule in (0, 1), increasing; "
                         f"received {rungs!r}") from err
    if not values or any(not 0 < r < 1 for r in values) or any(
            b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"rungs must be fractions of the schedule in (0, 1), strictly "
                         f"increasing, at least one; received {rungs!r}")
    return values


def rung_steps(rungs, total_steps):
    """The global step of each rung (at least 1, strictly increasing, below ``total_steps``).

    Raises:
      ValueError: when the schedule has too few steps to tell the rungs apart.
    """
    steps = [max(1, round(r * total_steps)) for r in check_rungs(rungs)]
    if any(b <= a for a, b in zip(steps, steps[1:])) or steps[-1] >= total_steps:
        raise ValueError(f"rungs {list(rungs)} of a {total_steps}-step schedule fall on steps "
                         f"{steps}: they must be distinct and before the last step; use fewer "
                         "or wider-apart rungs, or a longer schedule")
    return steps


def check_anneal(anneal):
    """``anneal`` as a float in [0, 1) (a fraction of the schedule's steps); a clear error otherwise."""
    if isinstance(anneal, bool) or not isinstance(anneal, (int, float)) or not 0 <= anneal < 1:
        raise ValueError(f"anneal must be a fraction of the schedule's steps in [0, 1) (0: no "
                         f"probe before a rung's ranking); received {anneal!r}")
    return float(anneal)


def probe_steps(anneal, steps, total_steps):
    """The steps of each rung's probe: ``round(anneal * total_steps)``, at least 1 when
    ``anneal`` > 0, 0 without; a probe must end before the schedule does.

    Raises:
      ValueError: when the last rung plus its probe reaches the end of the schedule.
    """
    if not check_anneal(anneal):
        return 0
    length = max(1, round(anneal * total_steps))
    if steps[-1] + length >= total_steps:
        raise ValueError(f"anneal {anneal} is {length} steps: from the last rung (step "
                         f"{steps[-1]}) it reaches the end of the {total_steps}-step schedule; "
                         "use a shorter anneal or an earlier rung")
    return length


def eta_for(pairs, rungs):
    """The smallest halving rate (>= 2) that leaves one pair after ``rungs`` rungs.

    E.g. 4 pairs, 2 rungs: 2 (4 -> 2 -> 1); 7 pairs, 2 rungs: 3 (7 -> 3 -> 1).
    """
    checks.check_int("pairs", pairs)
    checks.check_int("rungs", rungs)
    eta = 2
    while True:
        n = pairs
        for _ in range(rungs):
            n = max(1, math.ceil(n / eta))
        if n == 1:
            return eta
        eta += 1


def survivors(ranked, eta):
    """How many of ``ranked`` pairs go on to the next rung: ceil(n / eta), at least 1."""
    return max(1, math.ceil(len(ranked) / eta))


class _StopAtStep(keras.callbacks.Callback):
    """Stops ``fit`` once the optimizer has taken ``step`` steps (checked after every batch)."""

    def __init__(self, step):
        super().__init__()
        self.step = int(step)

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) >= self.step:
            self.model.stop_training = True


def pair_label(conv_bits, dw_bits):
    """"4/8" (conv/depthwise bits) or "4" (a family without depthwise convs)."""
    return str(conv_bits) if dw_bits is None else f"{conv_bits}/{dw_bits}"


def _pair_name(conv_bits, dw_bits):
    return f"{conv_bits}_{'none' if dw_bits is None else dw_bits}"


class _Pair:
    """One (pair, seed) on its way through the rungs: its model and its checkpoints."""

    def __init__(self, folder, config, build, state, build_float=None):
        self.folder = folder
        self.config = config
        self.build = build
        self.build_float = build_float
        self.state = state  # {"step": int, "rungs": [...], ...}, stored in halving.json
        self.model = None

    def checkpoint(self):
        return tf.train.Checkpoint(model=self.model, optimizer=self.model.optimizer)

    def load(self, recipe, steps_per_epoch):
        if self.model is not None:
            return
        if self.config.seed is not None:
            # Drawn as the grid trial of this config and seed is: experiment.run seeds, builds
            # the float model once (to check the config), then builds the one it trains.
            keras.utils.set_random_seed(self.config.seed)
            if self.build_float is not None:
                self.build_float()
        self.model = training.compile_model(self.build(), recipe, steps_per_epoch)
        self.model.optimizer.build(self.model.trainable_variables)
        if self.state["step"]:
            path = os.path.join(self.folder, f"step_{self.state['step']}")
            self.checkpoint().read(path).assert_existing_objects_matched()

    def save(self):
        path = os.path.join(self.folder, f"step_{self.state['step']}")
        self.checkpoint().write(path)
        return path

    def drop_old_checkpoints(self):
        keep = f"step_{self.state['step']}"
        for path in glob.glob(os.path.join(self.folder, "step_*")):
            if not os.path.basename(path).startswith(keep + "."):
                os.remove(path)


def halving_search(base_config, budget_bits, *, bits=(1, 2, 4, 8), recipe, out_dir,
                   rungs=DEFAULT_RUNGS, eta=None, datasets=None, data_dir=None, image_size=16,
                   verbose=0, tolerance=0.03, seeds=1, measure=None, anneal=0.0):
    """The best (conv_bits, dw_bits) at ``budget_bits`` by successive halving over steps.

    Every pair of ``bits`` x ``bits`` (just ``bits`` for families without depthwise
    convs) is widened to ``budget_bits`` (as the grid does: width within
    ``tolerance``) and set on ``recipe``'s whole schedule. At each rung (a
    fraction of the schedule's steps) every pair still in trains up to that step
    and is evaluated on the test set; the best ``ceil(n / eta)`` by mean accuracy
    over ``seeds`` go on. Those left after the last rung finish the schedule; the
    most accurate of them is the answer. Each rung's ``cut`` says whether it was
    decided beyond the seed spread: the mean margin of the last pair kept over the
    first dropped against their pooled seed std (``beyond_spread`` is None with one
    seed, when no spread is known). A cut within the spread is a coin toss between
    those pairs; on short schedules early rungs often are (``BENCHMARKS.md``).

    Args:
      base_config: :class:`tfq_pareto.experiment.RunConfig`; its precision and width
        are replaced; ``seed`` (default 0) is the first seed.
      budget_bits: the Eq. (6) budget, in bits.
      bits: the precision set B.
      recipe: :class:`tfq_pareto.training.Recipe`, the schedule every pair starts.
      out_dir: where the state, checkpoints and results go (resumable).
      rungs: increasing fractions of the schedule in (0, 1) at which pairs are ranked.
      eta: the halving rate (>= 2): ``ceil(n / eta)`` pairs go on from each rung;
        None (default): the smallest that leaves one pair to finish the schedule
        (:func:`eta_for` of the pairs the budget takes).
      datasets, data_dir, image_size: as :func:`tfq_pareto.search.sweep`.
      verbose: Keras progress of each training chunk.
      tolerance: relative tolerance of the width search under the budget.
      seeds: trainings per pair (seeds ``s, s+1, ...``), ranked on their mean.
      measure: optional ``measure(record, datasets) -> dict`` whose fields (e.g. the
        exported model's ``flash_bytes``, ``ram_bytes``, ``macs``) are added to each
        finished pair's record, as :class:`~tfq_pareto.search.PrecisionTuner` does.
      anneal: the probe before each rung's ranking, as a fraction of the schedule's steps
        in [0, 1) (0, the default: no probe; the pairs are ranked as they are). Every pair
        still in trains that many more steps from a copy of its state with the learning
        rate going linearly to 0, is evaluated, and is ranked on that accuracy; the copy
        is then dropped (module docstring). A rung plus its probe must end before the
        schedule does.

    Returns:
      ``{"best": TrialRecord, "records": [finished TrialRecords], "rungs": [{"fraction",
      "step", "accuracies": {"c/d": mean}, "stds": {"c/d": sample std or None},
      "ranking": [[c, d], ...], "kept": [[c, d], ...], "cut": {"kept", "dropped", "margin",
      "pooled_std", "beyond_spread"} or None, and with ``anneal``: "unannealed": {"c/d":
      mean accuracy at the rung before the probe}}, ...],
      "failed": [{"pair", "message"}], "train_seconds": {"rungs", "final", "total"},
      "eval_seconds": s, "steps": {"trained", "probe", "total"}, "anneal_steps": n}`` (also
      ``results.json``). ``train_seconds`` is ``model.fit``'s wall clock (no validation pass:
      each rung evaluates once, and once more after its probe, counted in ``eval_seconds``);
      the probes' seconds count in ``"rungs"``. ``steps`` counts optimizer steps: those the
      pairs kept (``trained``) and those their probes threw away.
    """
    from tfq_pareto.search.run import _check_bits_list, _prepare  # pylint: disable=import-outside-toplevel
    from tfq_pareto.width import width_for_size  # pylint: disable=import-outside-toplevel

    if any(isinstance(b, (tuple, list)) for b in bits):
        raise ValueError(f"bits is the precision set B (ints; every (conv, dw) pair of B x B is "
                         f"searched); received {bits!r}")
    bits = sorted(set(_check_bits_list(bits)))
    checks.check_positive("budget_bits", budget_bits)
    checks.check_int("seeds", seeds)
    if eta is not None:
        checks.check_int("eta", eta, minimum=2)
    rungs = check_rungs(rungs)
    anneal = check_anneal(anneal)
    datasets, depthwise = _prepare(base_config, recipe, datasets, data_dir, image_size)
    train_raw, test_raw, info = datasets
    steps_per_epoch = -(-info.num_train // recipe.batch_size)
    total_steps = recipe.epochs * steps_per_epoch
    steps = rung_steps(rungs, total_steps)
    anneal_steps = probe_steps(anneal, steps, total_steps)
    act_bits = base_config.act_bits or recipe.act_bits
    first_seed = base_config.seed or 0
    settings = {"config": dataclasses.asdict(base_config), "recipe": dataclasses.asdict(recipe),
                "budget_bits": float(budget_bits), "bits": bits, "rungs": rungs, "eta": eta,
                "seeds": seeds, "tolerance": tolerance, "num_train": info.num_train,
                "num_test": info.num_test}
    if anneal:  # only then, so that a search stored before the option resumes
        settings["anneal"] = anneal
    os.makedirs(out_dir, exist_ok=True)
    state_path = os.path.join(out_dir, STATE_JSON)
    state = {"settings": settings, "pairs": {}}
    if os.path.exists(state_path):
        with open(state_path, encoding="utf-8") as f:
            stored = json.load(f)
        if stored.get("settings") != jsonable(settings):
            changed = sorted(k for k in settings
                             if stored.get("settings", {}).get(k) != jsonable(settings)[k])
            raise ValueError(f"{out_dir} holds a halving search with other settings "
                             f"({', '.join(changed)} differ); use another out_dir to start a "
                             "new one")
        state = stored

    def write_state():
        training.write_json(state_path, jsonable(state))

    one_hot = bool(recipe.label_smoothing)
    test_data = data.pipeline(test_raw, info, training=False, batch_size=recipe.batch_size,
                              one_hot=one_hot)
    failed, alive = [], []
    for conv_bits, dw in [(c, d) for c in bits for d in (bits if depthwise else [None])]:
        config = dataclasses.replace(base_config, conv_bits=conv_bits, dw_bits=dw,
                                     act_bits=act_bits)
        try:
            width = width_for_size(lambda w, c=config: experiment.build_float_model(
                dataclasses.replace(c, width_multiplier=w), info), budget_bits,
                                   conv_bits=conv_bits, dw_bits=dw, tolerance=tolerance)
        except ValueError as err:
            failed.append({"pair": [conv_bits, dw],
                           "message": f"budget unreachable: {str(err).splitlines()[0]}"})
            continue
        config = dataclasses.replace(config, width_multiplier=round(width, 4))
        runs = []
        for index in range(seeds):
            seed_config = dataclasses.replace(config, seed=first_seed + index)
            key = f"{_pair_name(conv_bits, dw)}/seed_{first_seed + index}"
            entry = state["pairs"].setdefault(key, {
                "conv_bits": conv_bits, "dw_bits": dw, "seed": first_seed + index,
                "width_multiplier": config.width_multiplier, "step": 0, "rungs": [],
                "train_seconds": 0.0, "eval_seconds": 0.0, "failed": None})

            def build(c=seed_config):
                return apply(experiment.build_float_model(c, info), conv_bits=c.conv_bits,
                             dw_bits=c.dw_bits, first_last_bits=c.first_last_bits,
                             act_bits=c.act_bits)

            runs.append(_Pair(os.path.join(out_dir, "pairs", key), seed_config, build, entry,
                              build_float=lambda c=seed_config: experiment.build_float_model(
                                  c, info)))
        alive.append(((conv_bits, dw), runs))
    if eta is None:
        eta = eta_for(max(1, len(alive)), len(rungs))
    write_state()

    def advance(pair, target):
        """Trains ``pair`` up to global step ``target``, evaluates, checkpoints, saves the state."""
        entry = pair.state
        if entry["failed"] or entry["step"] >= target:
            return False
        pair.load(recipe, steps_per_epoch)
        # The grid trial's batches from the pair's step on: its pipeline (same seeds) repeated
        # epoch after epoch, the batches already trained skipped. Keras's fit makes one
        # iterator of a finite dataset before its first epoch and a new one at every epoch,
        # so the grid's first epoch is the pipeline's second shuffle: one iterator is made
        # and dropped here too.
        tf.random.set_seed(pair.config.seed)
        train_data = data.pipeline(train_raw, info, training=True, batch_size=recipe.batch_size,
                                   one_hot=one_hot, seed=pair.config.seed)
        iter(train_data)  # pylint: disable=expression-not-assigned
        train_data = train_data.repeat().skip(entry["step"])
        passes = -(-(target - entry["step"]) // steps_per_epoch)
        start = time.perf_counter()
        pair.model.fit(train_data, epochs=passes, steps_per_epoch=steps_per_epoch,
                       verbose=verbose, callbacks=[_StopAtStep(target)])
        trained = time.perf_counter() - start
        start = time.perf_counter()
        loss, accuracy = pair.model.evaluate(test_data, verbose=0)
        evaluated = time.perf_counter() - start
        reached = int(pair.model.optimizer.iterations.numpy())
        entry["train_seconds"] += trained
        entry["eval_seconds"] += evaluated
        entry["step"] = reached
        entry["rungs"].append({"step": reached, "fraction": reached / total_steps,
                               "accuracy": float(accuracy), "loss": float(loss),
                               "train_seconds": trained, "eval_seconds": evaluated})
        if not math.isfinite(loss):
            entry["failed"] = f"loss is {loss} at step {reached} (training diverged)"
        os.makedirs(pair.folder, exist_ok=True)
        pair.save()
        write_state()
        pair.drop_old_checkpoints()
        return True

    def probe(pair, step):
        """Anneals a copy of ``pair`` from ``step`` over ``anneal_steps``, evaluates, drops it."""
        entry = pair.state
        if entry["failed"] or any(p["step"] == step for p in entry.setdefault("probes", [])):
            return
        pair.load(recipe, steps_per_epoch)
        model, old = pair.model, pair.model.optimizer
        start_lr = float(training.make_schedule(recipe, steps_per_epoch)(step))
        optimizer = training.make_optimizer(recipe, steps_per_epoch, learning_rate=(
            training.LinearAnneal(start_lr, step, anneal_steps)))
        optimizer.build(model.trainable_variables)
        if len(optimizer.variables) != len(old.variables):
            raise RuntimeError("the probe's optimizer does not mirror the pair's: "
                               f"{len(optimizer.variables)} variables against {len(old.variables)}")
        for mine, theirs in zip(optimizer.variables, old.variables):
            mine.assign(theirs)  # the step count and the momentum buffers
        training.compile_model(model, recipe, steps_per_epoch, optimizer=optimizer)
        tf.random.set_seed(pair.config.seed)
        train_data = data.pipeline(train_raw, info, training=True, batch_size=recipe.batch_size,
                                   one_hot=one_hot, seed=pair.config.seed)
        iter(train_data)  # pylint: disable=expression-not-assigned
        train_data = train_data.repeat().skip(step)
        start = time.perf_counter()
        model.fit(train_data, epochs=-(-anneal_steps // steps_per_epoch),
                  steps_per_epoch=steps_per_epoch, verbose=verbose,
                  callbacks=[_StopAtStep(step + anneal_steps)])
        trained = time.perf_counter() - start
        start = time.perf_counter()
        loss, accuracy = model.evaluate(test_data, verbose=0)
        evaluated = time.perf_counter() - start
        reached = int(optimizer.iterations.numpy())
        entry["train_seconds"] += trained
        entry["eval_seconds"] += evaluated
        entry["probes"].append({"step": step, "steps": reached - step, "start_lr": start_lr,
                                "accuracy": float(accuracy), "loss": float(loss),
                                "train_seconds": trained, "eval_seconds": evaluated})
        write_state()
        pair.model = None  # the probe's weights go; the pair resumes from its checkpoint

    def accuracy_at(pair, step, probed=False):
        if probed:
            return next(p["accuracy"] for p in pair.state["probes"] if p["step"] == step)
        return next(r["accuracy"] for r in pair.state["rungs"] if r["step"] == step)

    rung_log = []
    for fraction, step in zip(rungs, steps):
        for _, runs in alive:
            for pair in runs:
                advance(pair, step)
        for name, runs in alive:
            for pair in runs:
                if pair.state["failed"]:
                    failed.append({"pair": list(name), "message": pair.state["failed"]})
        alive = [(name, runs) for name, runs in alive if not any(p.state["failed"] for p in runs)]
        plain = {name: sum(accuracy_at(p, step) for p in runs) / len(runs)
                 for name, runs in alive}
        if anneal_steps:
            for _, runs in alive:
                for pair in runs:
                    probe(pair, step)
        means = {name: sum(accuracy_at(p, step, bool(anneal_steps)) for p in runs) / len(runs)
                 for name, runs in alive}
        stds = {name: sample_std([accuracy_at(p, step, bool(anneal_steps)) for p in runs])
                for name, runs in alive}
        ranked = sorted(alive, key=lambda item: -means[item[0]])
        alive = ranked[:survivors(ranked, eta)]
        rung_log.append({"fraction": fraction, "step": step,
                         "accuracies": {pair_label(*name): means[name] for name in means},
                         "stds": {pair_label(*name): stds[name] for name in stds},
                         "ranking": [list(name) for name, _ in ranked],
                         "kept": [list(name) for name, _ in alive],
                         "cut": _cut(ranked, len(alive), means, stds)})
        if anneal_steps:
            rung_log[-1]["unannealed"] = {pair_label(*name): plain[name] for name in plain}
        for pair in (p for _, runs in ranked[len(alive):] for p in runs):
            pair.model = None  # out of the search: free its graph

    records = []
    for name, runs in alive:
        trained = [advance(pair, total_steps) for pair in runs]
        if any(p.state["failed"] for p in runs):
            failed.append({"pair": list(name), "message": next(
                p.state["failed"] for p in runs if p.state["failed"])})
            continue
        seed_records = []
        for pair, now in zip(runs, trained):
            entry = pair.state
            model_file = os.path.join(pair.folder, experiment.MODEL_FILE)
            pair.load(recipe, steps_per_epoch)
            if now or not os.path.exists(model_file):  # a finished rerun saves nothing again
                save_model(pair.model, model_file)
            final = entry["rungs"][-1]
            size_bits = model_size(pair.model)
            seed_records.append(TrialRecord(
                conv_bits=entry["conv_bits"], dw_bits=entry["dw_bits"],
                width_multiplier=entry["width_multiplier"], budget_bits=float(budget_bits),
                seed=entry["seed"], config=dataclasses.asdict(pair.config),
                recipe=dataclasses.asdict(recipe), dataset_info=dataclasses.asdict(info),
                size_bits=size_bits, size_kib=size_bits / 8192,
                params=pair.model.count_params(), accuracy=final["accuracy"],
                loss=final["loss"], train_seconds=entry["train_seconds"],
                epochs_run=recipe.epochs, model_file=model_file))
        record = combine_seeds(seed_records)
        if measure is not None:
            record = record.replace(**measure(record, datasets))
        records.append(record)
    best = max(records, key=lambda r: r.accuracy) if records else None
    pairs = list(state["pairs"].values())
    rung_seconds = sum(r["train_seconds"] for p in pairs for r in p["rungs"]
                       if r["step"] < total_steps) + sum(
                           r["train_seconds"] for p in pairs for r in p.get("probes", []))
    kept_steps = sum(p["step"] for p in pairs)
    thrown = sum(r["steps"] for p in pairs for r in p.get("probes", []))
    final_seconds = sum(r["train_seconds"] for p in pairs for r in p["rungs"]
                        if r["step"] == total_steps)  # only the survivors get there
    result = {"kind": "halving_search", **settings, "eta_used": eta, "rung_steps": steps,
              "total_steps": total_steps, "best": best, "records": records,
              "rungs": rung_log, "failed": failed,
              "train_seconds": {"rungs": rung_seconds, "final": final_seconds,
                                "total": rung_seconds + final_seconds},
              "eval_seconds": sum(p["eval_seconds"] for p in pairs),
              "steps": {"trained": kept_steps, "probe": thrown, "total": kept_steps + thrown},
              "anneal": anneal, "anneal_steps": anneal_steps,
              "pairs": state["pairs"]}
    training.write_json(os.path.join(out_dir, RESULTS_JSON), jsonable(result))
    return result

