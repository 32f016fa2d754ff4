"""Unsupervised domain adaptation: methods that use a target domain's *unlabelled* training texts.

``METHODS`` (``base.py``) names each method the cross-domain benchmark can run: ``source_only`` (the
baseline), ``target_mlm`` (continued masked-LM training of the backbone on source + target texts
before the task fine-tune, ``mlm.py``) and ``dann`` (a domain classifier behind a gradient-reversal
layer, trained with the task: the ``dann`` objective in ``OBJECTIVES``, ``dann.py`` / ``grl.py``).

Every method receives the target domain only as a file of texts (``texts.py``): no label ever
reaches it.  This package sits in layer 2 (it imports config, registry, training, zoo); the
benchmark that runs it over task pairs is ``mmsft.crossdomain``.  Nothing is imported here, so the
objective registry can load ``mmsft.adaptation.dann`` without pulling in anything else.
"""
