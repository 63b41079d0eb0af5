"""The schedule DSL: frozen steps, templates with knobs, the recorder, helpers for knob spaces and for
fused templates. Templates import from here and nothing else of convsched."""
from .fusion import MemberView, member_template, schedule_member, stages_of
from .knobs import divisors, divisors_of, vector_multiples
from .steps import STEP_TYPES, Schedule, Step
from .template import (Template, add_template_dir, get_template, list_templates, record, replay, template_dirs,
                       user_template_dirs)

__all__ = ["Schedule", "Step", "STEP_TYPES", "Template", "add_template_dir", "get_template", "list_templates",
           "record", "replay", "template_dirs", "user_template_dirs", "divisors", "divisors_of", "vector_multiples",
           "schedule_member", "stages_of", "member_template", "MemberView"]
