"""Knowledge-F1 (Shuster et al. 2021): unigram F1 between a reply and its retrieved passages (0-1)."""
from mmsft.metrics.bases import TextMetric
from mmsft.metrics.grounding import unigram_f1


class KnowledgeF1(TextMetric):
    DESCRIPTION = (
        "Per sample, the unigram F1 (SQuAD normalisation: lower case, punctuation and articles removed) between the "
        "generated reply and the concatenation of the passages the sample retrieved; averaged over samples. A sample "
        "without passages scores 0. High values mean the reply uses the retrieved knowledge's words."
    )
    CITATION = "Shuster et al., 2021. Retrieval Augmentation Reduces Hallucination in Conversation."
    INPUTS = """    knowledge (list of list of str): the passages each sample retrieved (required).
Returns:
    knowledge_f1 (float): 0-1.
"""

    def _compute(self, predictions, references=None, knowledge=None):
        if knowledge is None or len(knowledge) != len(predictions):
            raise ValueError("knowledge_f1 needs knowledge=[[passage, ...], ...] with one list per prediction")
        scores = [unigram_f1(reply, " ".join(passages)) if passages else 0.0 for reply, passages in zip(predictions, knowledge)]
        return {"knowledge_f1": sum(scores) / len(scores) if scores else 0.0}
