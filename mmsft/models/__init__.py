"""The composed task model: a backbone (one feature interface per family), modules between backbone
and heads, named heads; poolings, heads and modules are registries (``mmsft.registry``)."""
from .backbone import Backbone  # noqa: F401
from .build import build_model  # noqa: F401
from .composed import ComposedModel  # noqa: F401
from .features import FeatureRequest, Features  # noqa: F401
