"""Networks of layers: a networkx DAG, checked along its edges, fused where it pays, compiled and run.

    import convsched as cs
    L = cs.layers
    g = cs.graph.Graph("resnet_block")
    x = g.input("x", (1, 56, 56, 64))
    c1 = g.add("c1", L.Conv2d(h=56, w=56, cin=64, cout=64, bias=True, act="relu"), x)
    c2 = g.add("c2", L.Conv2d(h=56, w=56, cin=64, cout=64, bias=True), c1)
    y = g.add("join", L.Add(h=56, w=56, c=64, act="relu"), c2, x)   # residual add + ReLU
    g.output(y)

    plan = g.plan()                 # fusion plan: which nodes become one kernel, with which template, and why
    print(plan)                     # c1 alone; [c2 + join] fused/epilogue; ...
    plan = g.plan(fuse=[("c1", "c2")], unfuse=["join"])    # override the planner (checked)
    net = g.compile(plan)           # one kernel per group, compiled in topological order
    params = g.random_params()      # {"c1.w": ..., "c1.b": ..., ...} (kernel argument names are node.spec)
    y = net(x_array, params=params) # or net.set_params(params); net(x_array)
    g.reference({"x": x_array}, params)    # numpy, node by node: the test oracle

Nodes are layers; a node's data inputs are the first arguments of its layer (in input_specs() order), the
rest are parameters (weights, biases, thresholds) given at run time as "<node>.<spec>". add() checks every
edge: the producer's output shape and dtype must equal the consumer's argument spec, or GraphError says which
edge, which argument, and what differs.

Fusion: a group of nodes becomes one FusedLayer (fused.py), itself a Layer whose declare() chains the members'
TE declarations by passing tensors (a consumer reads its producer's stage directly; stages and weights are
named "<member>_<name>", e.g. "c2_conv", "c2_w") and whose template (schedules/fused/*.py) schedules the members
together: conv + bias + ReLU + Add as one register-tiled loop nest (fused/epilogue), conv rows computed
just before the pool row that reads them (fused/conv_pool), ... The planner fuses a producer into its only
consumer when a fused template applies to the pair and says why not otherwise; plan text shows every choice.

Intermediate buffers between kernels are planned once at compile time: a buffer is reused as soon as the
last kernel reading the value it holds has run (net.memory_plan() prints the slots).

The package's jobs: graph.py (building and checking), fused.py (FusedLayer), plan.py (the planner),
rewrites.py (rules that replace a pair of layers by one), runtime.py (CompiledGraph), networks.py (samples).
"""
from ..errors import GraphError
from ..schedule.fusion import SEP, prefixed
from .fused import PLANNER_TEMPLATES, FusedLayer, Member
from .graph import Graph
from .networks import binary_net, mobilenet_block, resnet_basic_block
from .plan import Group, Plan
from .rewrites import REWRITES
from .runtime import CompiledGraph

__all__ = ["Graph", "GraphError", "FusedLayer", "Member", "Plan", "Group", "CompiledGraph", "REWRITES",
           "PLANNER_TEMPLATES", "SEP", "prefixed", "resnet_basic_block", "mobilenet_block", "binary_net"]
