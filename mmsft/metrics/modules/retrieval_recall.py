"""Recall@K both ways from a query-by-candidate similarity matrix (text -> image and image -> text)."""
import numpy as np

from mmsft.metrics.bases import ScoreRowMetric

KS = (1, 5, 10)


class RetrievalRecall(ScoreRowMetric):
    DESCRIPTION = ("Cross-modal retrieval: each prediction row holds one text query's similarity to every image, each "
                   "reference that text's image index. t2i: a text hits at K when its image ranks in the top K; i2t: "
                   "an image hits at K when any of its texts ranks in its top K (the same matrix, by column). 0-1.")
    INPUTS = """Returns:
    r1_t2i, r5_t2i, r10_t2i, r1_i2t, r5_i2t, r10_i2t (float): recall at 1, 5, 10 both ways; r_mean (float): their mean.
"""

    def _compute(self, predictions, references):
        sims = np.asarray(predictions, dtype=float)
        truth = np.asarray([r[0] for r in references], dtype=int)
        if sims.ndim != 2 or len(truth) != sims.shape[0] or truth.max(initial=-1) >= sims.shape[1]:
            raise ValueError(f"need an (n_texts, n_images) matrix and one image index per text; got {sims.shape}")
        rank_t2i = (sims > sims[np.arange(len(truth)), truth][:, None]).sum(1)  # images scored above the true one
        out = {f"r{k}_t2i": float((rank_t2i < k).mean()) for k in KS}
        images = np.unique(truth)
        best = []
        for image in images:  # rank of the best-placed true text among all texts, for this image
            column = sims[:, image]
            order = np.argsort(-column, kind="stable")
            best.append(int(np.flatnonzero(truth[order] == image)[0]))
        best = np.asarray(best)
        out.update({f"r{k}_i2t": float((best < k).mean()) for k in KS})
        out["r_mean"] = float(np.mean([out[f"r{k}_{d}"] for k in KS for d in ("t2i", "i2t")]))
        return out
