"""Frozen-prefix cache of the text encoder: cached == uncached (embeddings and LoRA gradients, train and
eval, MiniLM and tiny local Llama / GPT-2 decoders), counters, LRU bound, invalidation, save/load."""

from __future__ import annotations

import logging

import pytest
import torch

from moreclip.config import TextConfig
from moreclip.models import create_model, load
from moreclip.models.text import TextEncoder, length_groups, resolve_backbone
from moreclip.models.text_cache import PrefixCache

TEXTS = [
    "sinus rhythm with first degree av block",
    "no acute cardiopulmonary process. the heart size is normal.",
    "atrial fibrillation",
]
# second batch: hits, a duplicate, an unseen text, another order and padding length
TEXTS2 = [TEXTS[2], "moderate right pleural effusion with adjacent atelectasis", TEXTS[0], TEXTS[2]]


def _randomise_lora(enc: TextEncoder) -> None:
    torch.manual_seed(0)
    with torch.no_grad():  # non-zero LoRA B so the adapters (and their dropout) matter
        for n, p in enc.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.2)


def _run(enc: TextEncoder, texts: list[str], cached: bool, seed: int = 1):
    """Pooled features and the gradients of the trainable parameters, with or without the cache."""
    saved = enc.prefix
    if not cached:
        enc.prefix = None
    try:
        enc.zero_grad(set_to_none=True)
        torch.manual_seed(seed)  # same LoRA dropout masks on both paths
        z = enc.encode(texts)
        weights = torch.linspace(-1, 1, z.numel()).view_as(z)
        (z * weights).sum().backward()
        grads = {n: p.grad.clone() for n, p in enc.named_parameters() if p.requires_grad}
    finally:
        enc.prefix = saved
    return z.detach(), grads


# float32 rounding: cached states may come from a batch of another shape (measured: <= ~3e-7 relative)
TOL = 1e-6


def _assert_close(a: torch.Tensor, b: torch.Tensor, tol: float = TOL) -> None:
    scale = max(1.0, a.abs().max().item())
    assert (a - b).abs().max().item() <= tol * scale


def _assert_cached_equals_uncached(enc: TextEncoder) -> None:
    assert enc.prefix is not None
    for mode in (True, False):
        enc.train(mode)
        for texts in (TEXTS, TEXTS2, TEXTS2):  # cold, mixed, warm
            z0, g0 = _run(enc, texts, cached=False)
            z1, g1 = _run(enc, texts, cached=True)
            _assert_close(z0, z1)
            assert g0.keys() == g1.keys() and g0
            for n in g0:
                _assert_close(g0[n], g1[n])
    st = enc.cache_stats()
    assert st["hits"] > 0 and st["misses"] == 4  # the four distinct texts, each computed once
    enc.eval()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: intra-op threads only add synchronisation (ms per op on a busy 2-core machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def minilm() -> TextEncoder:
    enc = TextEncoder(TextConfig(lora_layers=[-2, -1], max_length=32, lora_dropout=0.3, prefix_cache_mb=4))
    _randomise_lora(enc)
    return enc


def _save_decoder(kind: str, out) -> str:
    """A 3-layer decoder with random weights and the MiniLM tokenizer (right padding), saved locally."""
    from transformers import AutoTokenizer, GPT2Config, GPT2Model, LlamaConfig, LlamaModel

    tok = AutoTokenizer.from_pretrained(resolve_backbone("minilm"))
    torch.manual_seed(0)
    if kind == "llama":
        cfg = LlamaConfig(
            vocab_size=tok.vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
            pad_token_id=tok.pad_token_id,
            attention_dropout=0.2,
        )
        LlamaModel(cfg).save_pretrained(out)
    else:
        cfg = GPT2Config(
            vocab_size=tok.vocab_size,
            n_embd=32,
            n_layer=3,
            n_head=4,
            n_positions=64,
            bos_token_id=tok.cls_token_id,
            eos_token_id=tok.sep_token_id,
        )
        GPT2Model(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def test_minilm_cached_equals_uncached_in_train_and_eval(minilm):
    minilm.clear_cache()
    assert minilm.prefix.split == 4  # LoRA in layers 4-5: layers 0-3 cached
    _assert_cached_equals_uncached(minilm)


def test_a_batch_with_nothing_cached_runs_the_plain_path_bit_for_bit(minilm):
    minilm.clear_cache()
    for mode in (True, False):
        minilm.train(mode)
        z0, g0 = _run(minilm, TEXTS2, cached=False)
        minilm.clear_cache()
        z1, g1 = _run(minilm, TEXTS2, cached=True)  # the first epoch costs what it did
        assert torch.equal(z0, z1) and all(torch.equal(g0[n], g1[n]) for n in g0)
    minilm.eval()
    assert minilm.cache_stats()["entries"] == 3  # and keeps what it computed


def test_frozen_backbone_runs_in_eval_mode_and_lora_dropout_follows_train(minilm):
    minilm.train()
    try:
        dropouts = {
            n: m.training for n, m in minilm.backbone.named_modules() if isinstance(m, torch.nn.Dropout)
        }
        assert any("lora_dropout" in n for n in dropouts)
        assert all(on == ("lora_dropout" in n) for n, on in dropouts.items())
        a, _ = _run(minilm, TEXTS, cached=True, seed=1)
        b, _ = _run(minilm, TEXTS, cached=True, seed=2)
        assert not torch.allclose(a, b)  # LoRA dropout really runs in training
    finally:
        minilm.eval()
    assert not any(m.training for m in minilm.modules())


@pytest.mark.parametrize(
    ("kind", "pooling", "layers", "split"), [("llama", "last", [-1], 2), ("gpt2", "mean", [-2, -1], 1)]
)
def test_decoder_cached_equals_uncached(tmp_path, kind, pooling, layers, split):
    path = _save_decoder(kind, tmp_path / kind)
    enc = TextEncoder(
        TextConfig(
            model_name=path,
            pooling=pooling,
            lora_layers=layers,
            lora_r=4,
            lora_alpha=8,
            lora_dropout=0.3,
            max_length=32,
            prefix_cache_mb=1,
        )
    )
    assert enc.prefix.split == split
    _randomise_lora(enc)
    _assert_cached_equals_uncached(enc)


def test_fully_frozen_backbone_caches_the_last_hidden_states():
    enc = TextEncoder(TextConfig(lora=False, freeze_backbone=True, max_length=32, prefix_cache_mb=1))
    assert enc.prefix.split == len(enc.backbone.encoder.layer)
    for texts in (TEXTS, TEXTS2):
        with torch.no_grad():
            saved, enc.prefix = enc.prefix, None
            ref = enc.encode(texts)
            enc.prefix = saved
            _assert_close(ref, enc.encode(texts))
    assert enc.cache_stats()["hits"] == 2


def test_counters_count_distinct_texts_per_call(minilm):
    minilm.clear_cache()
    before = minilm.cache_stats()
    with torch.no_grad():
        minilm.encode(["a", "b", "a"])
        minilm.encode(["a", "c"])
    st = minilm.cache_stats()
    assert (st["hits"] - before["hits"], st["misses"] - before["misses"]) == (1, 3)
    assert st["entries"] == 3 and st["bytes"] == sum(3 * 384 * 4 for _ in range(3))  # [CLS] x [SEP]


def test_prefix_cache_is_a_byte_bounded_lru():
    c = PrefixCache(max_bytes=3 * 40)
    for k in (b"a", b"b", b"c"):
        c.put(k, torch.zeros(10))  # 40 bytes each
    assert c.get(b"a") is not None  # a is now most recent
    c.put(b"d", torch.zeros(10))  # evicts b, the least recently used
    assert b"b" not in c and all(k in c for k in (b"a", b"c", b"d"))
    c.put(b"big", torch.zeros(100))  # larger than the whole cache: not stored
    assert b"big" not in c and c.bytes == 120 and c.evictions == 1
    assert c.get(b"b") is None
    assert c.stats() | {"hit_rate": None} == {
        "hits": 1,
        "misses": 1,
        "hit_rate": None,
        "evictions": 1,
        "entries": 3,
        "bytes": 120,
        "max_bytes": 120,
    }


def test_small_cache_evicts_and_stays_exact(minilm):
    minilm.set_prefix_cache(30_000 / 2**20)  # 30 kB: one or two of these texts, (n, 384) float32 each
    try:
        with torch.no_grad():
            for texts in (TEXTS, TEXTS2, TEXTS):
                saved, minilm.prefix = minilm.prefix, None
                ref = minilm.encode(texts)
                minilm.prefix = saved
                _assert_close(ref, minilm.encode(texts))
        st = minilm.cache_stats()
        assert st["evictions"] > 0 and st["bytes"] <= st["max_bytes"]
    finally:
        minilm.set_prefix_cache(4)


def test_changed_prefix_weights_clear_the_cache(minilm):
    minilm.clear_cache()
    emb = minilm.backbone.embeddings.word_embeddings.weight
    with torch.no_grad():
        minilm.encode(TEXTS)
        old = emb.clone()
        state = {k: v.clone() for k, v in minilm.state_dict().items()}
        state["backbone.embeddings.word_embeddings.weight"].mul_(1.5)
        minilm.load_state_dict(state)
        try:
            saved, minilm.prefix = minilm.prefix, None
            ref = minilm.encode(TEXTS)
            minilm.prefix = saved
            _assert_close(ref, minilm.encode(TEXTS))
            assert minilm.cache_stats()["entries"] == 3
        finally:
            emb.copy_(old)


def test_states_cached_under_inference_mode_serve_training(minilm):
    minilm.clear_cache()
    minilm.eval()
    with torch.inference_mode():
        minilm.encode(TEXTS)
    minilm.train()
    try:
        z0, g0 = _run(minilm, TEXTS, cached=False)
        z1, g1 = _run(minilm, TEXTS, cached=True)  # all hits, states are normal tensors
    finally:
        minilm.eval()
    _assert_close(z0, z1)
    for n in g0:
        _assert_close(g0[n], g1[n])


def test_inputs_embeds_and_left_padding_bypass_the_cache(minilm, caplog):
    ids = minilm.tokenize(TEXTS)
    with torch.no_grad():
        ref = minilm(**ids)
        embeds = minilm.backbone.embeddings.word_embeddings(ids["input_ids"])
        before = minilm.cache_stats()
        out = minilm(inputs_embeds=embeds, attention_mask=ids["attention_mask"])
        assert out.shape == ref.shape and minilm.cache_stats() == before
        left = {k: v.flip(1) for k, v in ids.items()}  # a left-padded batch: runs uncached, logged once
        with caplog.at_level(logging.INFO, logger="moreclip.models.text_cache"):
            minilm(**left)
        assert minilm.cache_stats() == before and "not right-padded" in caplog.text


def test_no_cache_where_it_cannot_be_exact(caplog):
    with caplog.at_level(logging.INFO, logger="moreclip.models.text"):
        every_layer = TextEncoder(TextConfig(lora_layers=None, max_length=16, prefix_cache_mb=1))
        trainable = TextEncoder(
            TextConfig(lora=False, freeze_backbone=False, max_length=16, prefix_cache_mb=1)
        )
    assert every_layer.prefix is None and every_layer.cache_stats() is None
    assert trainable.prefix is None
    assert "no frozen prefix" in caplog.text and "trainable" in caplog.text
    trainable.train()
    assert trainable.backbone.training  # a trainable backbone keeps its dropout


def test_model_save_load_unaffected_by_the_cache(tmp_path):
    kw = {"xray": {"depth": 1, "img_size": 32}, "ecg": {"depth": 1}}
    model = create_model("tiny", text={"max_length": 32, "prefix_cache_mb": 8}, **kw)
    plain = create_model("tiny", text={"max_length": 32, "prefix_cache_mb": 0}, **kw)
    _randomise_lora(model.text["text"])
    model.eval()
    with torch.no_grad():
        before = model.encode_text(TEXTS)
        model.encode_text(TEXTS)
    assert model.text["text"].cache_stats()["hits"] == 3
    assert model.state_dict().keys() == plain.state_dict().keys()
    model.save_pretrained(tmp_path / "ckpt")
    loaded = load(tmp_path / "ckpt")
    enc = loaded.text["text"]
    assert enc.prefix is not None and enc.cache_stats()["entries"] == 0  # config kept, cache not saved
    with torch.no_grad():
        assert torch.allclose(loaded.encode_text(TEXTS), before, atol=1e-6)


def test_length_groups_cover_every_row_once_at_its_group_width():
    lengths = torch.tensor([5, 90, 3, 9, 88, 21, 3, 40])
    mask = (torch.arange(96) < lengths[:, None]).long()
    groups = length_groups(mask, per_call=16)
    rows = torch.cat([g for g, _ in groups])
    assert sorted(rows.tolist()) == list(range(8)) and len(groups) > 1
    assert all(w == int(lengths[g].max()) for g, w in groups)
    assert [w for _, w in groups] == sorted(w for _, w in groups)
    assert len(length_groups(mask, per_call=10**6)) == 1  # calls too dear: one group
    assert len(length_groups(mask.flip(1), per_call=16)) == 1  # left padding: never regrouped


def test_batch_grouped_by_length_equals_one_text_at_a_time(minilm):
    long = "moderate right pleural effusion with adjacent atelectasis and a small left effusion " * 2
    texts = [*TEXTS, *(f"finding {i}" for i in range(6)), long, long + "again"]
    assert len(length_groups(minilm.tokenize(texts)["attention_mask"])) > 1
    minilm.eval()
    z0, g0 = _run(minilm, texts, cached=False)
    singles = [_run(minilm, [t], cached=False) for t in texts]
    _assert_close(z0, torch.cat([z for z, _ in singles]))
    # the batch loss is a sum over rows with the same row weights as in _run: compare its gradients to
    # the sum of the single-row gradients weighted alike
    w = torch.linspace(-1, 1, z0.numel()).view_as(z0)
    minilm.zero_grad(set_to_none=True)
    for i, t in enumerate(texts):
        (minilm.encode([t]) * w[i : i + 1]).sum().backward()
    for n, p in minilm.named_parameters():
        if p.requires_grad:
            _assert_close(g0[n], p.grad, tol=1e-5)  # 11 backward passes summed in another order
