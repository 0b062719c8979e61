"""SetFit's first stage: tune a sentence encoder so that sentences with the same labels
embed close together and sentences with different labels apart.

SetFit (Tunstall et al., 2022) fine-tunes a sentence-transformer on pairs drawn from the
labelled sentences with a cosine-similarity loss (target 1 for a pair with the same
label, 0 otherwise), then fits a simple classifier on the tuned embeddings. Here a
sentence's label is its stance together with its set of categories, so one tuned encoder
serves both heads of `embed_lr`. Written on plain torch rather than the `setfit` package:
it needs the same mean pooling, prefix and batching as `model.embed_lr.Embedder`, and the
package would bring sentence-transformers for about forty lines of loop.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from tqdm.auto import tqdm

from model.scorer import label_arrays
from model.transformer import mean_pool, pad_batch, tokenize

log = logging.getLogger("training.contrastive")


def label_keys(records: list[dict]) -> list[tuple]:
    """A sentence's label for pairing: (stance, categories) as one hashable key."""
    _, y_cat, y_stance = label_arrays(records)
    return [(int(s), tuple(np.flatnonzero(c))) for s, c in zip(y_stance, y_cat, strict=True)]


def make_pairs(keys: list[tuple], per_sentence: int, seed: int) -> list[tuple[int, int, float]]:
    """(i, j, target) pairs: for each sentence, alternately one with the same label (1.0)
    and one with another label (0.0), drawn at random; shuffled. A sentence whose label
    no other sentence has gets negatives only."""
    rng = np.random.default_rng(seed)
    by_key: dict[tuple, list[int]] = {}
    for i, key in enumerate(keys):
        by_key.setdefault(key, []).append(i)
    everyone = np.arange(len(keys))
    pairs = []
    for i, key in enumerate(keys):
        same = [j for j in by_key[key] if j != i]
        for k in range(per_sentence):
            if k % 2 == 0 and same:
                pairs.append((i, int(rng.choice(same)), 1.0))
                continue
            while True:  # rejection: most sentences have another label
                j = int(rng.choice(everyone))
                if keys[j] != key:
                    break
            pairs.append((i, j, 0.0))
    order = rng.permutation(len(pairs))
    return [pairs[k] for k in order]


def tune(
    encoder: torch.nn.Module,
    tokenizer,
    records: list[dict],
    prefix: str,
    max_length: int,
    cfg: dict,
    seed: int,
) -> dict:
    """Fine-tune `encoder` in place on label pairs (word embeddings frozen); returns a
    summary for meta.json: pairs, steps and mean train loss per epoch."""
    keys = label_keys(records)
    if len(set(keys)) < 2:
        raise ValueError("contrastive tuning needs sentences with at least two labels")
    pairs = make_pairs(keys, cfg["pairs_per_sentence"], seed)
    texts = [prefix + r["text"] for r in records]
    encoded = tokenize(tokenizer, texts, max_length)
    device = next(encoder.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    encoder.get_input_embeddings().weight.requires_grad_(False)
    params = [p for p in encoder.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=0.01)
    batch = cfg["batch_size"]
    losses = []
    encoder.train()
    torch.manual_seed(seed)
    for epoch in range(cfg["epochs"]):
        total, count = 0.0, 0
        steps = range(0, len(pairs), batch)
        for start in tqdm(steps, desc=f"contrastive epoch {epoch + 1}", unit="batch"):
            chunk = pairs[start : start + batch]
            left = [encoded[i] for i, _, _ in chunk]
            right = [encoded[j] for _, j, _ in chunk]
            ids, mask = pad_batch(left + right, pad, device)
            hidden = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
            pooled = mean_pool(hidden, mask)
            u, v = pooled[: len(chunk)], pooled[len(chunk) :]
            target = torch.tensor([t for _, _, t in chunk], device=device)
            loss = torch.nn.functional.mse_loss(torch.cosine_similarity(u, v), target)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            total += loss.item() * len(chunk)
            count += len(chunk)
        losses.append(total / count)
        log.info("contrastive epoch %d: mean loss %.4f over %d pairs", epoch + 1, losses[-1], count)
    encoder.eval()
    return {
        "pairs": len(pairs),
        "positive_pairs": int(sum(t for _, _, t in pairs)),
        "epochs": cfg["epochs"],
        "loss_per_epoch": losses,
    }
