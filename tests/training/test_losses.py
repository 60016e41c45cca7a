"""Every loss against a direct, loop-by-loop computation on small tensors; memory-bank semantics."""
from __future__ import annotations

import math

import pytest
import torch

from training.losses import (
    LOSSES,
    BankNCA,
    LossContext,
    MemoryBank,
    contrastive_loss,
    norm_softmax_loss,
    snca_loss,
    triplet_loss,
)
from training.models.functional import l2n
from training.schedule import bank_momentum, lr_factor


def _emb(n=8, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return l2n(torch.randn(n, d, generator=g, dtype=torch.float64))


LABELS = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3])


def test_contrastive_matches_eq8_loop():
    emb, margin = _emb(), 1.1
    pos, neg = [], []
    for i in range(len(emb)):
        for j in range(len(emb)):
            if i == j:
                continue
            d = torch.sqrt(((emb[i] - emb[j]) ** 2).sum())
            if LABELS[i] == LABELS[j]:
                pos.append(0.5 * d ** 2)
            elif margin - d > 0:
                neg.append(0.5 * (margin - d) ** 2)
    expected = sum(pos) / len(pos) + sum(neg) / len(neg)
    assert torch.allclose(contrastive_loss(emb, LABELS, margin), expected, atol=1e-10)


def test_contrastive_far_negatives_cost_nothing():
    # Two classes at opposite poles, identical within a class: both terms vanish.
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]])
    assert contrastive_loss(emb, torch.tensor([0, 0, 1, 1]), margin=1.5).item() == 0.0


def test_triplet_batch_hard_matches_loop():
    emb, margin = _emb(seed=1), 0.3
    terms = []
    for a in range(len(emb)):
        d2 = [((emb[a] - emb[j]) ** 2).sum() for j in range(len(emb))]
        pos = [d2[j] for j in range(len(emb)) if j != a and LABELS[j] == LABELS[a]]
        neg = [d2[j] for j in range(len(emb)) if LABELS[j] != LABELS[a]]
        if pos and neg:
            terms.append(max(0.0, max(pos) - min(neg) + margin))
    assert triplet_loss(emb, LABELS, margin).item() == pytest.approx(float(sum(terms) / len(terms)), rel=1e-12)


def test_norm_softmax_matches_loop():
    emb, protos, t = _emb(seed=2), torch.randn(4, 5, dtype=torch.float64), 0.1
    total = 0.0
    for i in range(len(emb)):
        logits = [float(emb[i] @ (protos[c] / protos[c].norm())) / t for c in range(4)]
        total += -(logits[LABELS[i]] - math.log(sum(math.exp(v) for v in logits)))
    assert norm_softmax_loss(emb, protos, LABELS, t).item() == pytest.approx(total / len(emb), rel=1e-9)


def _snca_loop(emb, bank, slots, positive_of, sigma):
    """-mean_i log( sum_{j in Omega_i, j != own} exp(s_ij/sigma) / sum_{k != own} exp(s_ik/sigma) )."""
    losses = []
    for i in range(len(emb)):
        den = num = 0.0
        for k in range(len(bank)):
            if k == slots[i]:
                continue
            e = math.exp(float(emb[i] @ bank[k]) / sigma)
            den += e
            if positive_of(i, k):
                num += e
        if num > 0:
            losses.append(-math.log(num / den))
    return sum(losses) / len(losses)


def test_snca_matches_loop_and_excludes_own_entry():
    bank_labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 0, 1])
    bank = _emb(10, 5, seed=3)
    emb, slots = _emb(4, 5, seed=4), torch.tensor([0, 2, 5, 7])
    labels = bank_labels[slots]
    positive = bank_labels[None, :] == labels[:, None]
    got = snca_loss(emb, bank, slots, positive, 0.5)
    # Sample 3 (class 3) has only its own entry as a positive: it is skipped.
    expected = _snca_loop(emb, bank, slots, lambda i, k: bank_labels[k] == labels[i], 0.5)
    assert got.item() == pytest.approx(expected, rel=1e-9)


def test_ri_snca_snca_ce_match_loops():
    labels = torch.tensor([0, 1, 0, 1, 2])  # 5 images x 8 rotation slots
    crit = BankNCA(labels, dim=6, sigma=0.5, rotations=8, lam=0.1, classes=3,
                   generator=torch.Generator().manual_seed(0)).double()
    z = torch.randn(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    slots = torch.tensor([0 * 8 + 3, 2 * 8 + 0, 4 * 8 + 7])
    y = labels[slots // 8]
    loss, parts = crit(z, y, slots)
    emb, bank = l2n(z), crit.bank.vectors
    cls = _snca_loop(emb, bank, slots, lambda i, k: labels[k // 8] == y[i], 0.5)
    rot = _snca_loop(emb, bank, slots, lambda i, k: k // 8 == slots[i] // 8, 0.5)
    logits = crit.classifier(z)
    ce = sum(-(logits[i, y[i]] - torch.logsumexp(logits[i], 0)) for i in range(3)) / 3
    assert parts["snca"].item() == pytest.approx(cls, rel=1e-9)
    assert parts["rotation"].item() == pytest.approx(rot, rel=1e-9)
    assert parts["ce"].item() == pytest.approx(ce.item(), rel=1e-9)
    assert loss.item() == pytest.approx(cls + 0.1 * rot + ce.item(), rel=1e-9)


def test_bank_momentum_update_formula_and_untouched_slots():
    bank = MemoryBank(6, 4, torch.Generator().manual_seed(0))
    before = bank.vectors.clone()
    feats = torch.randn(2, 4)
    slots = torch.tensor([1, 4])
    bank.momentum_update(slots, feats, 0.8)
    expected = l2n(0.8 * before[slots] + 0.2 * feats)
    assert torch.allclose(bank.vectors[slots], expected, atol=1e-6)
    keep = torch.tensor([0, 2, 3, 5])
    assert torch.equal(bank.vectors[keep], before[keep])
    bank.replace(slots, feats)
    assert torch.allclose(bank.vectors[slots], l2n(feats), atol=1e-6)


def test_bank_is_a_buffer_never_written_by_forward_or_backward():
    labels = torch.tensor([0, 0, 1, 1])
    crit = BankNCA(labels, dim=3, generator=torch.Generator().manual_seed(0))
    assert "bank.vectors" in crit.state_dict() and not any(p is crit.bank.vectors for p in crit.parameters())
    before = crit.bank.vectors.clone()
    z = torch.randn(2, 3, requires_grad=True)
    loss, _ = crit(z, labels[:2], torch.tensor([0, 1]))
    loss.backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert torch.equal(crit.bank.vectors, before) and crit.bank.vectors.grad is None


def test_bank_follows_the_module_dtype_and_device():
    crit = BankNCA(torch.tensor([0, 1, 0]), dim=3).to(torch.float64)
    assert crit.bank.vectors.dtype == torch.float64
    crit.bank.momentum_update(torch.tensor([2]), torch.randn(1, 3), 0.5)  # float32 features are cast to the bank
    assert crit.bank.vectors.dtype == torch.float64 and crit.slot_labels.device == crit.bank.vectors.device


def test_loss_table_builds_every_loss_and_backpropagates():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    settings = {"sigma": 0.05, "ri_lambda": 0.1, "contrastive_margin": 0.7, "triplet_margin": 0.1,
                "softmax_temperature": 0.05}
    for name, spec in LOSSES.items():
        crit = spec.build(LossContext(labels, 3, 4, settings, torch.Generator().manual_seed(0)))
        # Seeded: with some draws every triplet already meets its margin and the triplet loss has no gradient.
        z = torch.randn(4, 4, generator=torch.Generator().manual_seed(0)).requires_grad_()
        slots = torch.tensor([0, 2, 3, 5]) * spec.rotations
        loss, parts = crit(z, labels[[0, 2, 3, 5]], slots)
        loss.backward()
        assert torch.isfinite(loss) and z.grad.abs().sum() > 0, name
        assert set(parts) == set(crit.parts), name


def test_bank_momentum_schedule_of_kangs_code():
    values, milestones = (0.5, 0.8, 0.9), (80 / 130, 120 / 130)
    assert [bank_momentum(e, 130, values, milestones) for e in (0, 79, 80, 119, 120, 129)] == \
        [0.5, 0.5, 0.8, 0.8, 0.9, 0.9]


def test_lr_warmup_then_cosine():
    assert lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10) == pytest.approx(0.5)
    assert lr_factor(100, 100, 10) == pytest.approx(0.0, abs=1e-12)
