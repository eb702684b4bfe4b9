"""LoRA fine-tuning of a persona's model (PEFT on the CPU, Unsloth on a CUDA GPU) and its GGUF adapter export."""
from __future__ import annotations

import copy
import importlib.util
import json
import math
import os
import random
import re
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# torch, transformers, peft, unsloth, gguf and safetensors are imported inside the functions that use
# them: together they take seconds to import, and only the worker that trains a job needs them.

Log = Callable[[str], None]

# Bounds a person may set from the form; outside them a job would be useless or take days on a CPU.
LIMITS: dict[str, tuple[float, float]] = {
    "lora_r": (1, 256),
    "lora_alpha": (1, 1024),
    "lora_dropout": (0.0, 0.9),
    "learning_rate": (1e-7, 1e-1),
    "epochs": (1, 100),
    "max_steps": (0, 100_000),
    "batch_size": (1, 64),
    "max_len": (32, 8192),
    "eval_fraction": (0.0, 0.5),
    "eval_min_examples": (0, 1000),
    "eval_max_new_tokens": (1, 1024),
    "seed": (0, 2**31 - 1),
}
_INTS = {"lora_r", "lora_alpha", "epochs", "max_steps", "batch_size", "max_len", "eval_max_new_tokens", "seed",
         "eval_min_examples"}
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class FineTuneError(RuntimeError):
    """A fine-tune cannot proceed (bad data, unloadable model, adapter that does not fit the base)."""


class Cancelled(Exception):
    """The job was cancelled between two steps."""


@dataclass(frozen=True)
class Hyperparameters:
    """Validated LoRA and training settings; `from_dict` names the field in every error."""

    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    learning_rate: float = 2e-4
    epochs: int = 1
    max_steps: int = 40  # a cap (0 = none): epochs decide unless they would take longer
    batch_size: int = 1
    max_len: int = 512
    eval_fraction: float = 0.1
    eval_min_examples: int = 20  # held out however small the fraction, up to half the dataset
    eval_max_new_tokens: int = 64
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    seed: int = 0

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> Hyperparameters:
        raw = dict(raw or {})
        unknown = sorted(set(raw) - {f for f in cls.__dataclass_fields__})
        if unknown:
            raise ValueError(f"unknown hyperparameter(s): {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name, (low, high) in LIMITS.items():
            if name not in raw:
                continue
            value = raw[name]
            if isinstance(value, bool):
                raise ValueError(f"{name} must be a number, got {value!r}")
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"{name} must be a number, got {value!r}") from None
            if not math.isfinite(number) or not low <= number <= high:
                raise ValueError(f"{name} must be between {low:g} and {high:g}, got {value!r}")
            if name in _INTS:
                if number != int(number):
                    raise ValueError(f"{name} must be a whole number, got {value!r}")
                number = int(number)
            values[name] = number
        if "target_modules" in raw:
            modules = raw["target_modules"]
            if isinstance(modules, str):
                modules = [m.strip() for m in modules.split(",")]
            if not isinstance(modules, (list, tuple)) or not modules:
                raise ValueError("target_modules must list module names, e.g. q_proj,v_proj")
            modules = [str(m).strip() for m in modules if str(m).strip()]
            bad = [m for m in modules if not _MODULE_NAME.match(m)]
            if bad or not modules:
                raise ValueError(f"target_modules: {', '.join(bad) or '(empty)'} is not a module name")
            values["target_modules"] = tuple(dict.fromkeys(modules))
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["target_modules"] = ",".join(self.target_modules)
        return d


@dataclass
class StepInfo:
    """What the loop reports after each optimizer step."""

    step: int
    total_steps: int
    loss: float
    tokens: int
    elapsed_s: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass
class TrainResult:
    steps: int
    losses: list[float]
    tokens: int
    seconds: float
    backend: str
    skipped: int = 0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


@dataclass
class FineTuneOutcome:
    train: TrainResult
    adapter_dir: Path
    gguf_adapter: Path | None
    comparisons: list[dict[str, str]] = field(default_factory=list)


# --- data ---------------------------------------------------------------------------------------------

def read_jsonl(path: Path) -> list[list[dict[str, str]]]:
    """The chat conversations of a snapshot (one {"messages": [...]} per line)."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                messages = json.loads(line)["messages"]
            except (ValueError, KeyError, TypeError) as exc:
                raise FineTuneError(f"{path} line {number}: not a {{\"messages\": [...]}} object ({exc})") from None
            out.append(messages)
    return out


def held_out_count(total: int, *, fraction: float, minimum: int) -> int:
    """How many of `total` examples the evaluation holds out: the fraction or the minimum, whichever is
    larger, but never more than half (the other half trains); none of a single example."""
    if total < 2 or (fraction <= 0 and minimum <= 0):
        return 0
    return min(max(round(total * fraction), minimum, 1), total // 2)


def split_held_out(examples: list[Any], *, fraction: float, seed: int,
                   minimum: int = 0) -> tuple[list[Any], list[Any]]:
    """(train, held_out): a deterministic held-out split of held_out_count examples."""
    n = held_out_count(len(examples), fraction=fraction, minimum=minimum)
    if n == 0:
        return list(examples), []
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    held = set(order[:n])
    return [e for i, e in enumerate(examples) if i not in held], [e for i, e in enumerate(examples) if i in held]


def _render(tokenizer: Any, messages: list[dict[str, str]], *, generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def encode(tokenizer: Any, messages: list[dict[str, str]], max_len: int) -> tuple[list[int], list[int]] | None:
    """Token ids and labels of one conversation: only the assistant's tokens are learned (-100 elsewhere).

    Over-long conversations keep their end (the last answer matters most); None if no answer is left."""
    full = _render(tokenizer, messages, generation_prompt=False)
    spans: list[tuple[int, int]] = []
    cursor = 0
    for i, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        before = _render(tokenizer, messages[:i], generation_prompt=True) if i else ""
        through = _render(tokenizer, messages[: i + 1], generation_prompt=False)
        if full.startswith(through) and through.startswith(before):
            spans.append((len(before), len(through)))  # the answer and its end-of-turn marker
        else:
            # A template that is not prefix-stable: find the answer text itself.
            start = full.find(message.get("content", ""), cursor)
            if start < 0:
                continue
            spans.append((start, start + len(message.get("content", ""))))
        cursor = spans[-1][1]
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    labels = []
    for token, (start, end) in zip(ids, enc["offset_mapping"]):
        inside = any(start < s_end and end > s_start for s_start, s_end in spans) if end > start else False
        labels.append(token if inside else -100)
    if len(ids) > max_len:
        ids, labels = ids[-max_len:], labels[-max_len:]
    if all(label == -100 for label in labels):
        return None
    return ids, labels


def _batches(encoded: list[tuple[list[int], list[int]]], batch_size: int, seed: int) -> Iterable[list[int]]:
    rng = random.Random(seed)
    while True:
        order = list(range(len(encoded)))
        rng.shuffle(order)
        for i in range(0, len(order), batch_size):
            yield order[i:i + batch_size]


def _collate(rows: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, Any]:
    import torch

    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (ids, labs) in enumerate(rows):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        labels[r, : len(labs)] = torch.tensor(labs)
        mask[r, : len(ids)] = 1
    batch = {"input_ids": input_ids, "labels": labels}
    if not bool(mask.all()):
        # Only padded batches need a mask; without one the model takes the faster pure-causal path.
        batch["attention_mask"] = mask
    return batch


# --- model --------------------------------------------------------------------------------------------

def training_backend() -> str:
    """"unsloth" when a CUDA GPU and unsloth are both available, else "peft" (CPU)."""
    try:
        import torch
    except ImportError as exc:
        raise FineTuneError("torch is not installed") from exc
    if torch.cuda.is_available() and importlib.util.find_spec("unsloth") is not None:
        return "unsloth"
    return "peft"


CACHE_COMPLETE = "a4ps-cache.json"  # written last: an entry without it is unfinished and ignored


def unfinished_cache_entries(cache_dir: Path) -> list[Path]:
    """Half-written entries (a worker killed while saving one): never read, only cleared."""
    return sorted(Path(cache_dir).glob(".*.tmp")) if Path(cache_dir).is_dir() else []


def cached_bases(cache_dir: Path) -> list[dict[str, Any]]:
    """The dequantised bases in cache_dir: digest, source file name, bytes and when each was made."""
    rows = []
    for entry in sorted(Path(cache_dir).glob("*")) if Path(cache_dir).is_dir() else []:
        marker = entry / CACHE_COMPLETE
        if not marker.is_file():
            continue
        try:
            meta = json.loads(marker.read_text())
        except (OSError, ValueError):
            continue
        size = sum(f.stat().st_size for f in entry.rglob("*") if f.is_file())
        rows.append({"digest": entry.name, "source": meta.get("source", ""), "bytes": size,
                     "created": meta.get("created", 0.0), "path": str(entry)})
    return rows


def _store_in_cache(model: Any, tokenizer: Any, entry: Path, source: Path, log: Log) -> None:
    """Save the dequantised model as a model directory under entry (atomically: a temp dir renamed)."""
    started = time.perf_counter()
    tmp = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        # transformers refuses save_pretrained on a model loaded from a GGUF (its quantizer is marked
        # unserialisable), though the weights are plain float32 by now: write them and the config
        # ourselves, without the GGUF quantization entry, so the cached copy loads as a plain model.
        from safetensors.torch import save_model

        tmp.mkdir(parents=True)
        config = copy.deepcopy(model.config)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(str(tmp))
        save_model(model, str(tmp / "model.safetensors"))  # handles the tied embedding / output weights
        tokenizer.save_pretrained(str(tmp))
        (tmp / CACHE_COMPLETE).write_text(json.dumps({"source": source.name, "created": time.time()}))
        try:
            os.replace(tmp, entry)
        except OSError:  # another job cached the same base meanwhile: theirs is as good
            shutil.rmtree(tmp, ignore_errors=True)
    except Exception as exc:  # noqa: BLE001 - a full disk or a refused tensor costs the next job its head
        # start, never this job
        shutil.rmtree(tmp, ignore_errors=True)
        log(f"Could not cache the dequantised base ({exc}); the next job dequantises again.")
        return
    size = sum(f.stat().st_size for f in entry.rglob("*") if f.is_file())
    log(f"Cached the dequantised base ({size / 1e9:.1f} GB in {time.perf_counter() - started:.1f} s): "
        "later jobs on this file start from it.")


def load_base(base: str | Path, *, max_len: int = 512, log: Log = print,
              cache_dir: Path | None = None) -> tuple[Any, Any, str]:
    """(model, tokenizer, backend) for a GGUF file (dequantised by transformers) or a model directory.

    With cache_dir, a GGUF is dequantised once per file content (its SHA-256) and kept there as a model
    directory; later loads of the same file read that instead."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(base).expanduser()
    if not path.exists():
        raise FineTuneError(f"base model {path} does not exist")
    backend = training_backend()
    started = time.perf_counter()
    entry: Path | None = None
    try:
        if backend == "unsloth" and path.is_dir():
            from unsloth import FastLanguageModel

            model, tokenizer = FastLanguageModel.from_pretrained(model_name=str(path), max_seq_length=max_len,
                                                                 load_in_4bit=True)
        else:
            backend = "peft"
            kwargs: dict[str, Any] = {}
            where = str(path)
            if path.suffix == ".gguf" and cache_dir is not None:
                from personas.inference.embedded_backend import gguf_sha256

                digest = gguf_sha256(path)
                entry = Path(cache_dir) / digest
                if (entry / CACHE_COMPLETE).is_file():
                    where = str(entry)
                    log(f"Loading {path.name} from the dequantised cache (SHA-256 {digest[:12]}…): "
                        "no dequantising this time.")
                    entry = None  # nothing to store
                else:
                    log(f"{path.name} (SHA-256 {digest[:12]}…) is not in the dequantised cache yet.")
            if where == str(path) and path.suffix == ".gguf":
                # transformers reads the GGUF (needs the gguf package) and dequantises it to float32.
                where, kwargs = str(path.parent), {"gguf_file": path.name}
                log(f"Loading and dequantising {path.name} (this takes a minute on a CPU)…")
            elif where == str(path):
                log(f"Loading {path}…")
            tokenizer = AutoTokenizer.from_pretrained(where, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(where, dtype=torch.float32, **kwargs)
    except FineTuneError:
        raise
    except Exception as exc:  # transformers raises many kinds for unreadable or unsupported weights
        raise FineTuneError(f"could not load {path}: {type(exc).__name__}: {exc}") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "chat_template", None):
        raise FineTuneError(f"{path} has no chat template: the dataset's chats cannot be rendered for it")
    log(f"Loaded {path.name} in {time.perf_counter() - started:.1f} s "
        f"({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, training with {backend}).")
    if entry is not None:
        entry.parent.mkdir(parents=True, exist_ok=True)
        _store_in_cache(model, tokenizer, entry, path, log)
    return model, tokenizer, backend


def attach_lora(model: Any, hyper: Hyperparameters, *, backend: str = "peft") -> Any:
    """Wrap the model with trainable LoRA matrices on the target modules; the base stays frozen."""
    if backend == "unsloth":
        from unsloth import FastLanguageModel

        return FastLanguageModel.get_peft_model(model, r=hyper.lora_r, lora_alpha=hyper.lora_alpha,
                                                lora_dropout=hyper.lora_dropout,
                                                target_modules=list(hyper.target_modules))
    from peft import LoraConfig, get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [m for m in hyper.target_modules if m not in present]
    if missing:
        raise FineTuneError(f"target_modules {', '.join(missing)} do not exist in this model")
    config = LoraConfig(r=hyper.lora_r, lora_alpha=hyper.lora_alpha, lora_dropout=hyper.lora_dropout,
                        target_modules=list(hyper.target_modules), bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def train_lora(
    model: Any,
    tokenizer: Any,
    conversations: list[list[dict[str, str]]],
    hyper: Hyperparameters,
    *,
    on_step: Callable[[StepInfo], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    log: Log = print,
    backend: str = "peft",
) -> TrainResult:
    """The training loop on a LoRA-wrapped model: forward, loss, backward, optimizer step, per step.

    `should_stop` is asked before every step; when it says yes, Cancelled is raised (nothing saved)."""
    import torch

    torch.manual_seed(hyper.seed)
    encoded = []
    skipped = 0
    for messages in conversations:
        item = encode(tokenizer, messages, hyper.max_len)
        if item is None:
            skipped += 1
        else:
            encoded.append(item)
    if skipped:
        log(f"{skipped} example(s) have no assistant turn inside max_len={hyper.max_len} tokens: skipped.")
    if not encoded:
        raise FineTuneError("no trainable example: every conversation lacks an assistant turn")
    per_epoch = math.ceil(len(encoded) / hyper.batch_size)
    total = hyper.epochs * per_epoch
    if hyper.max_steps:
        total = min(total, hyper.max_steps)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=hyper.learning_rate, weight_decay=0.0)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    log(f"Training {sum(p.numel() for p in params):,} LoRA parameters on {len(encoded)} example(s): "
        f"{total} step(s), batch {hyper.batch_size}, lr {hyper.learning_rate:g}.")
    model.train()
    losses: list[float] = []
    tokens = 0
    started = time.perf_counter()
    batches = _batches(encoded, hyper.batch_size, hyper.seed)
    for step in range(1, total + 1):
        if should_stop is not None and should_stop():
            raise Cancelled(f"cancelled before step {step} of {total}")
        batch = _collate([encoded[i] for i in next(batches)], pad_id)
        out = model(**batch)
        loss = out.loss
        if not torch.isfinite(loss):
            raise FineTuneError(f"the loss became {loss.item()} at step {step}: lower the learning rate")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.item()))
        tokens += int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel()
        if on_step is not None:
            on_step(StepInfo(step=step, total_steps=total, loss=losses[-1], tokens=tokens,
                             elapsed_s=time.perf_counter() - started))
    model.eval()
    return TrainResult(steps=total, losses=losses, tokens=tokens, seconds=time.perf_counter() - started,
                       backend=backend, skipped=skipped)


def generate(model: Any, tokenizer: Any, messages: list[dict[str, str]], *, max_new_tokens: int) -> str:
    """A greedy answer to a chat (so base and adapted answers differ only by the adapter)."""
    import torch

    text = _render(tokenizer, messages, generation_prompt=True)
    enc = tokenizer(text, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def compare_on_held_out(model: Any, tokenizer: Any, held_out: list[list[dict[str, str]]], *,
                        max_new_tokens: int, log: Log = print,
                        should_stop: Callable[[], bool] | None = None) -> list[dict[str, str]]:
    """For each held-out chat: its last prompt, the reference answer, the base and the adapted answer.
    `should_stop` is asked before each chat: the evaluation of a real model takes minutes, and a job
    cancelled then stops there rather than finishing as if nobody had asked."""
    rows = []
    for number, messages in enumerate(held_out, 1):
        if should_stop is not None and should_stop():
            raise Cancelled(f"cancelled during the evaluation, before held-out example {number} of {len(held_out)}")
        last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
        if last is None:
            continue
        prompt = messages[:last]
        adapted = generate(model, tokenizer, prompt, max_new_tokens=max_new_tokens)
        with model.disable_adapter():
            base = generate(model, tokenizer, prompt, max_new_tokens=max_new_tokens)
        rows.append({"prompt": prompt[-1].get("content", ""), "reference": messages[last].get("content", ""),
                     "base": base, "adapted": adapted})
        log(f"Held-out example {len(rows)}/{len(held_out)}: base and adapted answers generated.")
    return rows


# --- GGUF LoRA export ---------------------------------------------------------------------------------

_PEFT_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.[A-Za-z0-9_]+)?\.weight$")


def _field(reader: Any, key: str) -> Any:
    f = reader.fields.get(key)
    return f.contents() if f is not None else None


def _permute_rows(b: np.ndarray, n_head: int) -> np.ndarray:
    # llama.cpp's converter reorders the rows of llama q/k weights (rotary halves interleaved);
    # transformers undoes it when loading a GGUF, so LoRA B (rows = output features) must be redone.
    out_features = b.shape[0]
    return b.reshape(n_head, 2, out_features // n_head // 2, *b.shape[1:]).swapaxes(1, 2).reshape(b.shape)


def adapter_to_gguf(adapter_dir: Path, base_gguf: Path, out_path: Path) -> dict[str, Any]:
    """Write a PEFT LoRA adapter as a llama.cpp LoRA GGUF for `base_gguf`; returns what was written.

    Each target weight `blk.N.<name>.weight` of the base gets `<that>.lora_a` (r × in) and
    `<that>.lora_b` (out × r); the header says general.type=adapter, adapter.type=lora and
    adapter.lora.alpha, so llama.cpp scales by alpha / r as PEFT does."""
    import gguf
    from safetensors.numpy import load_file

    adapter_dir, base_gguf, out_path = Path(adapter_dir), Path(base_gguf), Path(out_path)
    try:
        config = json.loads((adapter_dir / "adapter_config.json").read_text())
        weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    except (OSError, ValueError) as exc:
        raise FineTuneError(f"{adapter_dir} is not a readable PEFT adapter: {exc}") from exc
    r = int(config.get("r") or 0)
    alpha = float(config.get("lora_alpha") or r)
    if config.get("use_rslora"):
        alpha *= math.sqrt(r)  # rsLoRA scales by alpha/sqrt(r); llama.cpp always divides by r
    reader = gguf.GGUFReader(str(base_gguf))
    arch = _field(reader, "general.architecture")
    try:
        arch_enum = {name: key for key, name in gguf.MODEL_ARCH_NAMES.items()}[arch]
    except KeyError:
        raise FineTuneError(f"{base_gguf.name}: architecture {arch!r} is unknown to the gguf package") from None
    blocks = int(_field(reader, f"{arch}.block_count") or 0)
    names = gguf.TensorNameMap(arch_enum, blocks)
    base_shapes = {t.name: [int(x) for x in t.shape] for t in reader.tensors}
    n_head = _field(reader, f"{arch}.attention.head_count")
    n_head_kv = _field(reader, f"{arch}.attention.head_count_kv") or n_head

    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, value in weights.items():
        m = _PEFT_KEY.match(key)
        if not m:
            continue
        pairs.setdefault(m.group("module"), {})[m.group("ab")] = value
    if not pairs:
        raise FineTuneError(f"{adapter_dir} holds no LoRA weights")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".tmp")
    writer = gguf.GGUFWriter(str(tmp), arch)
    writer.add_type("adapter")
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    written = []
    for module, ab in sorted(pairs.items()):
        if set(ab) != {"A", "B"}:
            raise FineTuneError(f"{module}: lora_A or lora_B is missing")
        target = names.get_name(module + ".weight", try_suffixes=(".weight",))
        if target is None or target not in base_shapes:
            raise FineTuneError(f"{module} has no counterpart in {base_gguf.name} (looked for {target})")
        a = np.ascontiguousarray(ab["A"], dtype=np.float32)
        b = np.ascontiguousarray(ab["B"], dtype=np.float32)
        n_in, n_out = base_shapes[target][0], base_shapes[target][1]
        if a.shape[1] != n_in or b.shape[0] != n_out or a.shape[0] != b.shape[1]:
            raise FineTuneError(f"{module}: adapter shapes A{tuple(a.shape)} B{tuple(b.shape)} do not fit "
                                f"{target} ({n_out}×{n_in}) of {base_gguf.name}")
        if arch == "llama" and module.endswith(("q_proj", "k_proj")) and n_head:
            b = np.ascontiguousarray(_permute_rows(b, int(n_head if module.endswith("q_proj") else n_head_kv)))
        writer.add_tensor(target + ".lora_a", a)
        writer.add_tensor(target + ".lora_b", b)
        written.append(target)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(out_path)
    return {"path": str(out_path), "architecture": arch, "alpha": alpha, "rank": r, "tensors": len(written),
            "bytes": out_path.stat().st_size}


# --- the whole job ------------------------------------------------------------------------------------

def fine_tune(
    *,
    base_model: str | Path,
    snapshot: Path,
    work_dir: Path,
    hyper: Hyperparameters,
    base_gguf: Path | None = None,
    cache_dir: Path | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    log: Log = print,
) -> FineTuneOutcome:
    """Train on the snapshot minus a held-out split, save the adapter under work_dir/adapter/, write the
    llama.cpp adapter when the base is a GGUF, and answer the held-out prompts with and without it."""
    conversations = read_jsonl(snapshot)
    if not conversations:
        raise FineTuneError(f"{snapshot} holds no examples")
    train, held_out = split_held_out(conversations, fraction=hyper.eval_fraction, seed=hyper.seed,
                                     minimum=hyper.eval_min_examples)
    log(f"{len(conversations)} example(s): {len(train)} to train on, {len(held_out)} held out for evaluation.")
    model, tokenizer, backend = load_base(base_model, max_len=hyper.max_len, log=log, cache_dir=cache_dir)
    model = attach_lora(model, hyper, backend=backend)
    result = train_lora(model, tokenizer, train, hyper, on_step=on_step, should_stop=should_stop, log=log,
                        backend=backend)
    adapter_dir = Path(work_dir) / "adapter"
    model.save_pretrained(str(adapter_dir))
    log(f"Adapter saved to {adapter_dir} ({result.steps} steps, final loss {result.losses[-1]:.4f}, "
        f"{result.tokens_per_s:.0f} tokens/s).")
    gguf_path = None
    base_gguf = base_gguf or (Path(base_model) if str(base_model).endswith(".gguf") else None)
    if base_gguf is not None:
        info = adapter_to_gguf(adapter_dir, base_gguf, Path(work_dir) / "adapter.gguf")
        gguf_path = Path(info["path"])
        log(f"llama.cpp adapter written: {gguf_path.name} ({info['tensors']} tensors, {info['bytes']:,} bytes).")
    else:
        log("The base is not a GGUF file: no llama.cpp adapter was written.")
    comparisons = []
    if held_out:  # compare_on_held_out asks should_stop before each chat, the first included
        comparisons = compare_on_held_out(model, tokenizer, held_out, max_new_tokens=hyper.eval_max_new_tokens,
                                          log=log, should_stop=should_stop)
    return FineTuneOutcome(train=result, adapter_dir=adapter_dir, gguf_adapter=gguf_path, comparisons=comparisons)
