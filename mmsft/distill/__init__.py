"""Knowledge distillation from a trained teacher run into a student.

``objective.py`` is the ``distill`` objective (logit KD at temperature T, hidden-state KD through a
learned projection, token-level KD for LMs of one vocabulary), ``projection.py`` the projection
module, ``student.py`` the student's starting point (a zoo model, or the teacher cut to its first k
blocks), ``sequence.py`` sequence-level KD data (the teacher's decoded outputs), ``run.py`` the
``mmsft distill`` command.  Nothing is imported here: the objective and projection modules are
imported by their registries.
"""
