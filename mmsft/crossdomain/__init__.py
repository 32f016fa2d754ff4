"""Cross-domain transfer benchmarks: train on each source task, score on every target task's test split.

``mmsft bench cross-domain`` (``mmsft/cli/bench.py``) and ``benchmarks/cross_domain.py`` drive it:

* ``config.py``  -- ``BenchConfig``, the checked configuration (tasks, adapters, methods, seeds, label map);
* ``labels.py``  -- the label-set check (shared names, or a stated ``label_map``), before any training;
* ``plan.py``    -- tasks x adapters x methods x seeds -> cells; the unlabelled texts files;
* ``cells.py``   -- one cell: the method's stage, the fine-tune (``pipeline.train``), the scores, resume;
* ``scoring.py`` -- a trained run scored on another task's test split (labels mapped by name);
* ``matrix.py``  -- rows (mean +- std over seeds), transfer gaps, means, best method per pair;
* ``report.py``  -- Markdown + JSON + heatmap PNG;
* ``progress.py`` / ``bench.py`` -- running the cells (one or several processes), progress and time left.

The adaptation methods themselves live in ``mmsft.adaptation``.
"""
