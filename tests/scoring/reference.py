"""Slow reference implementations, written the way the published evaluators do it (tests only).

Python loops over samples, Python float arithmetic and the same operation order as SLAVC's
``EvaluatorFull`` (``calc_precision_recall``, ``calc_ap``, the F1 list) and the EZ-VSL/SLAVC AUC
(``sklearn.metrics.auc`` → ``np.trapezoid``). Written independently of avsl_bench.
"""

from __future__ import annotations

import numpy as np

_trapezoid = getattr(np, "trapezoid", None) or np.trapz


def loc_acc(ciou, gamma=0.5, strict=False):
    """EZ-VSL ``finalize_AP50`` (``np.mean(ciou >= 0.5)``) / SLAVC ``precision_at_50`` (> 0.5)."""
    c = np.array(ciou)
    return float(np.mean(c > gamma if strict else c >= gamma))


def auc(ciou):
    """``finalize_AUC``: y_i at 0.05*i, trapezoid rule."""
    cious = [np.sum(np.array(ciou) >= 0.05 * i) / len(ciou) for i in range(21)]
    thr = [0.05 * i for i in range(21)]
    return float(_trapezoid(cious, thr))


def precision_recall(positive, ciou, conf, conf_thr, ciou_thr=0.5):
    """SLAVC ``calc_precision_recall`` (``bb == 0`` ⇔ negative)."""
    true_pos, false_pos, false_neg = 0, 0, 0
    for is_pos, c, cf in zip(positive, ciou, conf):
        if not is_pos:
            if cf >= conf_thr:
                false_pos += 1
        elif cf >= conf_thr:
            if c >= ciou_thr:
                true_pos += 1
            else:
                false_pos += 1
        else:
            false_neg += 1
    precision = 1.0 if true_pos + false_pos == 0 else true_pos / (true_pos + false_pos)
    recall = 1.0 if true_pos + false_neg == 0 else true_pos / (true_pos + false_neg)
    return precision, recall


def ap_legacy(positive, ciou, conf, ciou_thr=0.5):
    """SLAVC ``calc_ap``."""
    precision, recall, skip = [], [], max(1, len(ciou) // 200)
    for thr in np.sort(np.array(conf))[:-1][::-skip]:
        p, r = precision_recall(positive, ciou, conf, thr, ciou_thr)
        precision.append(p)
        recall.append(r)
    precision_max = [np.max(precision[i:]) for i in range(len(precision))]
    return float(sum([precision_max[i] * (recall[i + 1] - recall[i]) for i in range(len(precision_max) - 1)]))


def f1_list(positive, ciou, conf, ciou_thr=0.5):
    """SLAVC ``finalize_stats``: thresholds and the F1 list."""
    conf_thr = list(sorted(conf))[:: max(1, len(conf) // 10)]
    pr = [precision_recall(positive, ciou, conf, thr, ciou_thr) for thr in conf_thr]
    return conf_thr, [2 * r * p / (r + p) if r + p > 0 else 0.0 for p, r in pr]


def max_f1_legacy(positive, ciou, conf, ciou_thr=0.5):
    return float(max(f1_list(positive, ciou, conf, ciou_thr)[1]))


def full_sweep(positive, ciou, conf, ciou_thr=0.5):
    """(thresholds high→low, P, R) at every distinct confidence."""
    thresholds = sorted(set(np.asarray(conf).tolist()), reverse=True)
    cf = np.asarray(conf)
    pts = [precision_recall(positive, ciou, cf, cf.dtype.type(t), ciou_thr) for t in thresholds]
    return thresholds, [p for p, _ in pts], [r for _, r in pts]


def ap_full(positive, ciou, conf, ciou_thr=0.5):
    """Σ_k (R_k − R_{k−1}) · max_{k'≥k} P_{k'}, R_0 = 0, left-to-right Python sum."""
    _, precision, recall = full_sweep(positive, ciou, conf, ciou_thr)
    total, previous = 0.0, 0.0
    for k in range(len(precision)):
        total += (recall[k] - previous) * max(precision[k:])
        previous = recall[k]
    return total


def max_f1_full(positive, ciou, conf, ciou_thr=0.5):
    _, precision, recall = full_sweep(positive, ciou, conf, ciou_thr)
    return max(2 * r * p / (r + p) if r + p > 0 else 0.0 for p, r in zip(precision, recall))
