"""Generation building blocks: templates and masking token by token, EOS and padding, special-token
rows under LoRA, left-padded batch generation."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from gen_fixtures import *  # noqa: E402,F401,F403
from mmsft.errors import UserError  # noqa: E402
from mmsft.generation.encoding import IGNORE, CausalCollator, encode, tokenize  # noqa: E402
from mmsft.generation.generate import GenerateOptions, generate, split_at_eos  # noqa: E402
from mmsft.generation.templates import TEMPLATES, Segment  # noqa: E402

CONV = [{"role": "user", "content": "Translate: a dog"}, {"role": "assistant", "content": "ein Hund"}]
MULTI = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
         {"role": "user", "content": "Name?"}, {"role": "assistant", "content": "Smol."}]


def expected(tok, parts: list[tuple[str, bool]], eos: int) -> tuple[list[int], list[int]]:
    """ids and labels built by hand: prompt texts masked, targets + EOS carried."""
    ids, labels = [], []
    for text, target in parts:
        toks = tokenize(tok, text) + ([eos] if target else [])
        ids += toks
        labels += toks if target else [IGNORE] * len(toks)
    return ids, labels


def test_role_template_single_turn_exact_tokens(smol_tok):
    eos = smol_tok.eos_token_id
    segs = TEMPLATES.get("role").render(CONV, smol_tok)
    assert segs == [Segment("<|user|>Translate: a dog\n<|assistant|>"), Segment("ein Hund", target=True)]
    enc = encode(segs, smol_tok, eos)
    ids, labels = expected(smol_tok, [("<|user|>Translate: a dog\n<|assistant|>", False), ("ein Hund", True)], eos)
    assert enc.input_ids == ids and enc.labels == labels
    assert enc.input_ids[0] == smol_tok.convert_tokens_to_ids("<|user|>")
    assert enc.labels[-1] == eos and enc.input_ids[-1] == eos
    # the generation prompt is exactly the masked prefix
    gen = encode(TEMPLATES.get("role").render(CONV[:1], smol_tok, generation=True), smol_tok, eos)
    assert gen.input_ids == enc.input_ids[: enc.prompt_len]
    assert enc.prompt_len == len(tokenize(smol_tok, "<|user|>Translate: a dog\n<|assistant|>"))


def test_role_template_multi_turn_loss_on_every_assistant_turn(smol_tok):
    eos = smol_tok.eos_token_id
    enc = encode(TEMPLATES.get("role").render(MULTI, smol_tok), smol_tok, eos)
    ids, labels = expected(smol_tok, [("<|system|>Be brief.\n<|user|>Hi\n<|assistant|>", False), ("Hello!", True),
                                      ("<|user|>Name?\n<|assistant|>", False), ("Smol.", True)], eos)
    assert enc.input_ids == ids and enc.labels == labels
    carried = [i for i, x in enumerate(enc.labels) if x != IGNORE]
    runs = [[carried[0]]]
    for i in carried[1:]:
        runs[-1].append(i) if i == runs[-1][-1] + 1 else runs.append([i])
    assert len(runs) == 2 and all(enc.input_ids[r[-1]] == eos for r in runs)  # each assistant turn closed by EOS
    assert enc.prompt_len == runs[1][0]  # generation prompt = everything before the last reply


def test_train_on_prompt_switch(smol_tok):
    enc = encode(TEMPLATES.get("role").render(MULTI, smol_tok), smol_tok, smol_tok.eos_token_id, train_on_prompt=True)
    assert enc.labels == enc.input_ids


def test_chat_template_target_ends_at_eos(smol_tok):
    eos = smol_tok.eos_token_id  # <|im_end|>
    segs = TEMPLATES.get("chat").render(MULTI, smol_tok)
    assert [s.target for s in segs] == [False, True, False, True]
    assert segs[1].text == "Hello!<|im_end|>" and segs[3].text == "Smol.<|im_end|>"
    assert segs[2].text.startswith("\n<|im_start|>user\nName?")  # ChatML's newline after EOS is prompt, not target
    enc = encode(segs, smol_tok, eos)
    assert enc.input_ids.count(eos) == 5  # one per turn (system, user, assistant, user, assistant): none appended twice
    targets = [t for t, lab in zip(enc.input_ids, enc.labels) if lab != IGNORE]
    assert targets == tokenize(smol_tok, "Hello!") + [eos] + tokenize(smol_tok, "Smol.") + [eos]
    prompt = TEMPLATES.get("chat").render(MULTI[:4], smol_tok, generation=True)
    assert "".join(s.text for s in prompt).endswith("<|im_start|>assistant\n")


def test_plain_template_and_bos(smol_tok, smol_path):
    segs = TEMPLATES.get("plain").render(MULTI[:3], smol_tok)
    assert segs == [Segment("Be brief.\n\nHi\n"), Segment("Hello!", target=True)]  # SmolLM2 adds no BOS

    class Bos:  # a tokenizer that prepends BOS (as Gemma's does)
        bos_token, bos_token_id = "<s>", 1

        def __call__(self, text, **kw):
            class R:
                input_ids = [1, 5]
            return R()

    assert TEMPLATES.get("plain").render(CONV, Bos())[0].text.startswith("<s>")


def test_template_errors(smol_tok, smol_path):
    from transformers import AutoTokenizer

    bare = AutoTokenizer.from_pretrained(smol_path)  # no role tokens added
    with pytest.raises(UserError, match="data.template.*special tokens"):
        TEMPLATES.get("role").check(bare)
    bare.chat_template = None
    with pytest.raises(UserError, match="no chat template"):
        TEMPLATES.get("chat").render(CONV, bare)


def test_collator_left_pads_and_never_masks_eos_as_pad(smol_tok):
    eos, pad = smol_tok.eos_token_id, smol_tok.pad_token_id
    assert eos == pad  # SmolLM2: pad is EOS, so EOS must never be found by its id
    items = []
    for conv in (CONV, MULTI):
        enc = encode(TEMPLATES.get("role").render(conv, smol_tok), smol_tok, eos)
        items.append({"input_ids": enc.input_ids, "labels": enc.labels})
    batch = CausalCollator(pad)(items)
    short, width = len(items[0]["input_ids"]), batch["input_ids"].shape[1]
    assert batch["attention_mask"][0].tolist() == [0] * (width - short) + [1] * short
    assert batch["labels"][0, : width - short].eq(IGNORE).all()
    assert batch["labels"][0, -1].item() == eos and batch["labels"][1, -1].item() == eos
    assert batch["labels"][0, width - short:].tolist() == items[0]["labels"]


def test_special_tokens_added_and_rows_initialised(tiny_llama):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mmsft.generation.tokens import SPECIAL_TOKENS, add_special_tokens, resize_for_tokens

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    rows = model.get_input_embeddings().weight.shape[0]
    new = add_special_tokens(tok)
    assert len(new) == 4 and new == list(range(rows, rows + 4))
    assert add_special_tokens(tok) == []  # idempotent
    resize_for_tokens(model, tok, new)
    weight = model.get_input_embeddings().weight
    assert weight.shape[0] == rows + 4 and model.get_output_embeddings().weight.data_ptr() == weight.data_ptr()
    user = tok.convert_tokens_to_ids(SPECIAL_TOKENS["user"])
    assert torch.allclose(weight[user], weight[tokenize(tok, "User:")].mean(0))
    assert tok.decode([user] + tokenize(tok, "hi"), skip_special_tokens=True) == "hi"


def _lora_model(tiny_llama, toy_mt):
    from mmsft.adapters import apply_adapters
    from mmsft.models import build_model
    from mmsft.registry import KINDS
    from mmsft.spec import build_run_config

    cfg = build_run_config(str(toy_mt), "lora", ["adapter.r=4"])
    kind = KINDS.get("generation")
    model, tok = build_model(cfg, kind, None)
    apply_adapters(model, cfg.adapters)
    return cfg, kind, model, tok


def test_new_token_rows_train_under_lora_old_rows_do_not(tiny_llama, toy_mt):
    cfg, kind, model, tok = _lora_model(tiny_llama, toy_mt)
    new = model.backbone.new_token_ids
    assert len(new) == 4
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("trainable_tokens_delta" in n for n in trainable) and any("lora_A" in n for n in trainable)
    vocab = torch.arange(len(tok))
    embed = model.backbone.model.get_input_embeddings()
    before = embed(vocab).detach().clone()
    prepared = kind.prepare(cfg, tok, kind.load_data(cfg))
    batch = prepared.collate(prepared.splits["train"][:8])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(3):
        model(**batch)["loss"].backward()
        opt.step()
        opt.zero_grad()
    after = embed(vocab).detach()
    changed = (after != before).any(1)
    used = [i for i in new if i in batch["input_ids"]]  # <|user|>, <|assistant|> appear in the prompts
    assert len(used) == 2 and changed[used].all()
    old = torch.ones(len(tok), dtype=torch.bool)
    old[new] = False
    assert not changed[old].any()  # every pre-existing row is bit-identical


def test_batch_generation_equals_one_by_one(tiny_llama):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    texts = ["a", "the cat sees the dog in the house", "hello there", "one two three four five six seven eight nine ten"]
    prompts = [tokenize(tok, t) for t in texts]
    assert len({len(p) for p in prompts}) == 4
    opts = GenerateOptions(max_new_tokens=6, batch_size=4)
    batched = generate(model, tok, prompts, opts)
    single = [generate(model, tok, [p], GenerateOptions(max_new_tokens=6, batch_size=1))[0] for p in prompts]
    assert [g.token_ids for g in batched] == [g.token_ids for g in single]
    assert all(len(g.token_ids) == 6 and not g.stopped_by_eos for g in batched if not g.stopped_by_eos)
    beams = generate(model, tok, prompts, GenerateOptions(max_new_tokens=4, num_beams=3, batch_size=2))
    assert len(beams) == 4 and all(isinstance(g.text, str) for g in beams)


def test_split_at_eos_uses_first_eos():
    assert split_at_eos([5, 7, 2, 2, 2], eos_id=2) == ([5, 7], True)  # pad == eos after the end
    assert split_at_eos([5, 7, 9], eos_id=2) == ([5, 7, 9], False)
    assert split_at_eos([2], eos_id=2) == ([], True)


def test_loss_on_left_padded_batch_equals_hf_loss_per_sample(tiny_llama, smol_tok):
    """The trimmed-logits, explicit-position loss equals Hugging Face's own loss on each unpadded sample."""
    from transformers import AutoModelForCausalLM

    from mmsft.generation.backbone import LMBackbone
    from mmsft.generation.head import LMHead
    from mmsft.generation.tokens import resize_for_tokens
    from mmsft.models import ComposedModel

    backbone = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    resize_for_tokens(backbone, smol_tok, smol_tok.convert_tokens_to_ids(["<|system|>", "<|user|>", "<|assistant|>", "<|knowledge|>"]))
    lm = LMBackbone(backbone, str(tiny_llama))
    model = ComposedModel(lm, {}, {"lm": LMHead(lm)}).eval()
    items = []
    for conv in (CONV, MULTI):
        enc = encode(TEMPLATES.get("role").render(conv, smol_tok), smol_tok, smol_tok.eos_token_id)
        items.append({"input_ids": enc.input_ids, "labels": enc.labels})
    with torch.no_grad():
        batch = model(**CausalCollator(smol_tok.pad_token_id)(items))
        sums, counts = 0.0, 0
        for it in items:
            ids, labels = torch.tensor([it["input_ids"]]), torch.tensor([it["labels"]])
            ref = backbone(input_ids=ids, labels=labels).loss
            n = int((labels[:, 1:] != IGNORE).sum())
            assert float(model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels)["loss"]) == pytest.approx(float(ref), rel=1e-5)
            sums, counts = sums + float(ref) * n, counts + n
    assert int(batch["heads"]["lm"]["tokens"]) == counts
    assert float(batch["loss"]) == pytest.approx(sums / counts, rel=1e-5)


def test_generate_block_validates_sampling_options():
    from mmsft.spec import build_run_config

    cfg = build_run_config("translation_en_de", "lora", ["data.generate.temperature=0.7", "data.generate.top_p=0.9"])
    assert cfg.data.generate.temperature == 0.7
    with pytest.raises(UserError, match="temperature"):
        build_run_config("translation_en_de", "lora", ["data.generate.temperature=-1"])
