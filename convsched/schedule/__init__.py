"""The schedule DSL: frozen steps, templates with knobs, the recorder, helpers for knob spaces, for deriving
vector widths, register tiles and epilogues from the target (helpers.py), and for fused templates. Templates
import from here and nothing else of convsched."""
from .fusion import MemberView, member_template, schedule_member, stages_of
from .helpers import (EPILOGUE, epilogue_stages, fits_registers, fma_efficiency, inline_epilogue, lanes_dividing,
                      place_epilogue, split_lanes, tile_on_stack, tile_registers, vectorize_innermost,
                      vectorize_lanes, vectors)
from .knobs import divisors, divisors_of, vector_multiples
from .steps import STEP_TYPES, TAILS, Schedule, Step
from .template import (Template, add_template_dir, get_template, list_templates, record, replay, template_dirs,
                       user_template_dirs)

__all__ = ["Schedule", "Step", "STEP_TYPES", "TAILS", "Template", "add_template_dir", "get_template",
           "list_templates", "record", "replay", "template_dirs", "user_template_dirs", "divisors", "divisors_of",
           "vector_multiples", "schedule_member", "stages_of", "member_template", "MemberView", "EPILOGUE",
           "epilogue_stages", "fits_registers", "fma_efficiency", "inline_epilogue", "lanes_dividing",
           "place_epilogue", "split_lanes", "tile_on_stack", "tile_registers", "vectorize_innermost",
           "vectorize_lanes", "vectors"]
