"""The schedule DSL: frozen steps, templates with knobs, the recorder, helpers for knob spaces."""
from .knobs import divisors, divisors_of, vector_multiples
from .steps import Schedule, Step, STEP_TYPES
from .template import add_template_dir, get_template, list_templates, record, replay, template_dirs

__all__ = ["Schedule", "Step", "STEP_TYPES", "add_template_dir", "get_template", "list_templates", "record",
           "replay", "template_dirs", "divisors", "divisors_of", "vector_multiples"]
