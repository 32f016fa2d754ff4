"""``mmsft distill TASK --teacher RUN --student BACKBONE|RUN``: one student run folder.

Everything that can be wrong (teacher, student, mode, label set, vocabularies, options, data) is
checked before anything is written.  The student run then holds, beside the usual run files,
``distill.json`` (teacher, student, mode, options, teacher decoding), ``student_init/`` (a
run-based student's starting weights, its ``model.backbone``) and, for sequence-level KD,
``teacher_data/`` (the decoded training targets): the folder is created first and training runs as
a resume of it, so ``--resume`` continues an interrupted distillation -- decoding included.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Optional

from ..errors import UserError
from .student import parse_student, write_init


def _split_overrides(overrides: list[str]) -> tuple[dict, list[str]]:
    """Bare keys naming a distillation option (alpha=0.5) or ``distill.KEY=...`` -> options; the rest
    are task overrides.  A bare key that names neither goes to the options (its error suggests one)."""
    from ..config import parse_override
    from ..spec import RunConfig
    from .objective import DistillOptions

    options_fields = {f.name for f in dataclasses.fields(DistillOptions)} - {"teacher"}
    run_fields = {f.name for f in dataclasses.fields(RunConfig)}
    options, task = {}, []
    for text in overrides:
        key, value = parse_override(text)
        if key[0] == "distill" and len(key) == 2:
            options[key[1]] = value
        elif len(key) == 1 and (key[0] in options_fields or key[0] not in run_fields):
            options[key[0]] = value
        else:
            task.append(text)
    return options, task


def _tokenizer(path, special_tokens: bool):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    if special_tokens:
        from ..generation.tokens import add_special_tokens

        add_special_tokens(tok)
    return tok


def _hidden_size(path) -> tuple[Optional[int], Optional[int]]:
    """(width, block count) from a model folder's config."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(path))
    config = getattr(config, "text_config", None) or config
    return getattr(config, "hidden_size", None), getattr(config, "num_hidden_layers", None)


def _model_path(source: str) -> str:
    from ..zoo import resolve

    return str(resolve(source).path)


def _resolve_mode(mode: str, kind: str) -> str:
    generation = kind == "generation"
    if mode == "auto":
        return "sequence" if generation else "logits"
    if generation and mode == "logits":
        raise UserError("generation runs distil per token or per sequence", where="--mode", expected="sequence or token")
    if not generation and mode in ("token", "sequence"):
        raise UserError(f"{mode}-level KD is for generation tasks; this task is {kind}", where="--mode", expected="logits (or auto)")
    return mode


def distill_run(task: str, teacher: str, student: str, layers: Optional[int] = None, adapter: Optional[str] = None,
                mode: str = "auto", overrides: list[str] = (), output: Optional[str] = None, resume: bool = False) -> Path:
    """Distil ``teacher`` into a student trained on ``task``; returns the student's run folder."""
    import yaml

    from .. import paths
    from ..atomic import remove_tree, write_json, write_text
    from ..config import from_dict, to_dict
    from ..derived import check_new_folder
    from ..pipeline import train
    from ..registry import KINDS
    from ..spec import RunConfig, build_run_config, check_plugins, load_run_config

    tick = time.perf_counter()
    teacher_dir = Path(teacher).resolve()
    if not (teacher_dir / "metrics.json").is_file():
        raise UserError("the teacher is not a finished run folder (no metrics.json)", where=f"--teacher {teacher}")
    t_cfg = load_run_config(teacher_dir)
    spec = parse_student(student, layers)
    options, task_overrides = _split_overrides(list(overrides))
    probe = build_run_config(task, adapter, task_overrides)
    out = Path(output) if output else paths.runs_dir() / f"{probe.name}-distill-{time.strftime('%Y%m%d-%H%M%S')}"
    if resume:
        if not (out / "distill.json").is_file() or (out / "metrics.json").is_file():
            raise UserError("nothing to resume: not an unfinished distillation", where=str(out))
    else:
        check_new_folder(out)
    mode = _resolve_mode(mode, probe.kind)
    if probe.kind != t_cfg.kind:
        raise UserError(f"the teacher is a {t_cfg.kind} run, the task is {probe.kind}", where="--teacher")
    if spec.is_run:
        s_cfg = load_run_config(spec.source)
        base_path, backbone = _model_path(s_cfg.model.backbone), str((out / "student_init").resolve())
    else:
        base_path = backbone = _model_path(spec.source)
    special = bool(getattr(probe.data, "special_tokens", False))
    if mode in ("logits", "token"):
        if mode == "logits" and list(t_cfg.data.labels) != list(probe.data.labels):
            raise UserError("the teacher was trained on another label set", where="--teacher",
                            expected=f"labels {list(probe.data.labels)}, got {list(t_cfg.data.labels)}")
        t_tok = _tokenizer(teacher_dir / "model", False)
        s_tok = _tokenizer(Path(spec.source) / "model" if spec.is_run else base_path, special)
        if t_tok.get_vocab() != s_tok.get_vocab():
            raise UserError(f"{mode}-level KD feeds the student's token ids to the teacher, but their vocabularies differ "
                            f"({len(t_tok)} vs {len(s_tok)} tokens)", where="--student",
                            expected="sequence-level KD (--mode sequence) for another tokenizer, or a student with the teacher's tokenizer"
                                     if probe.kind == "generation" else "a student with the teacher's tokenizer (e.g. {from: RUN, layers: 3})")
    elif options:
        raise UserError(f"sequence-level KD trains on the teacher's outputs; {sorted(options)} apply to logit / token KD", where="command line")
    extra = [f"model.backbone={backbone}"]
    if mode in ("logits", "token"):
        if "teacher" in options:
            raise UserError("the teacher is named by --teacher", where="teacher=", expected="--teacher RUN")
        objective = {"name": "distill", "teacher": str(teacher_dir), **options}
        extra += ["objective=" + json.dumps(objective), "train.cache_features=false"]  # the teacher reads token batches
        if float(options.get("hidden_weight", 0) or 0) > 0:
            t_width, _ = _hidden_size(_model_path(t_cfg.model.backbone))
            s_width, s_blocks = _hidden_size(base_path)
            if spec.layers:
                s_blocks = spec.layers
            if t_width != s_width:
                layers_ = options.get("hidden_layers") or list(range(s_blocks))
                modules = [*[to_dict(m) for m in probe.model.modules],
                           {"type": "distill_projection", "options": {"teacher_width": t_width, "layers": layers_}}]
                extra.append("model.modules=" + json.dumps(modules))
    cfg = build_run_config(task, adapter, [*task_overrides, *extra])
    kind = KINDS.get(cfg.kind)
    data = kind.load_data(cfg)  # bad data fails here, before the folder exists
    record = {"teacher": str(teacher_dir), "student": {"source": spec.source, "layers": spec.layers, "backbone": backbone},
              "mode": mode, "options": options, "task": cfg.name}
    if resume:  # what the first attempt recorded about the student stays (its init is not rewritten)
        record["student"] = json.loads((out / "distill.json").read_text()).get("student", record["student"])
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        if spec.is_run and not (out / "student_init" / "config.json").is_file():
            record["student"].update(write_init(spec, out / "student_init"))
        if mode == "sequence":
            from ..pipeline import load_run
            from . import sequence

            teacher_session = load_run(teacher_dir)
            decode_tick = time.perf_counter()
            data_overrides, record["teacher_decode"] = sequence.build(teacher_session, cfg.data, data.splits, out / "teacher_data")
            record["teacher_decode"]["seconds"] = round(time.perf_counter() - decode_tick, 1)
            del teacher_session
            raw = to_dict(cfg)
            raw["data"].update(data_overrides)
            cfg = from_dict(RunConfig, raw)
            check_plugins(cfg)
        record["prepare_seconds"] = round(time.perf_counter() - tick, 1)
        write_json(out / "distill.json", record)
        write_text(out / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    except Exception:
        if created and not resume:
            remove_tree(out)
        raise
    return train(cfg, out, resume=True)  # the folder holds this distillation's inputs: training continues into it

