//! The graph IR: a petgraph DAG of nodes, each producing one typed value.
//!
//! Edges run from an operand to its user and carry the operand's position, so operand order
//! survives rewrites. Node names are unique and stable: they come from the source (binding
//! names, parameter names) and are what IR text, diagnostics and reports show.

use super::types::TensorType;
use crate::ops::Op;
use crate::syntax::lexer::Span;
use nnc_runtime::Tensor;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use std::collections::{BTreeSet, HashMap};

pub type NodeId = NodeIndex<u32>;

#[derive(Clone, Debug)]
pub enum NodeKind {
    /// The model's `index`-th input.
    Input { index: usize },
    /// A weight, bound by name from a weights file or drawn by `--random-weights`.
    Param,
    /// A value known at compile time: a literal, or a folded computation on weights.
    Const(Tensor),
    Op(Op),
}

#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub kind: NodeKind,
    pub ty: TensorType,
    /// Where the value was written, for diagnostics; `None` for nodes that passes made.
    pub span: Option<Span>,
    /// Cache blocking chosen for a matrix product (`select-tiles`); a schedule, not
    /// semantics: it never changes the value.
    pub tile: Option<crate::target::Tile>,
    /// The CPU kernel that computes it (`select-kernels`); like `tile`, a schedule.
    pub kernel: Option<crate::kernel_plan::Kernel>,
}

impl Node {
    pub fn op(&self) -> Option<&Op> {
        match &self.kind {
            NodeKind::Op(op) => Some(op),
            NodeKind::Input { .. } | NodeKind::Param | NodeKind::Const(_) => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Graph {
    pub name: String,
    g: StableDiGraph<Node, usize>,
    /// Model inputs in declaration order.
    pub inputs: Vec<NodeId>,
    /// Model outputs in declaration order: (output name, value).
    pub outputs: Vec<(String, NodeId)>,
    names: HashMap<String, NodeId>,
    /// The next suffix to try per base name, so that many nodes wanting one name do not
    /// probe `_1`, `_2`, ... from the start each time.
    next_suffix: HashMap<String, usize>,
}

impl Graph {
    pub fn new(name: impl Into<String>) -> Graph {
        Graph { name: name.into(), g: StableDiGraph::default(), inputs: Vec::new(), outputs: Vec::new(), names: HashMap::new(), next_suffix: HashMap::new() }
    }

    /// A name not yet used in the graph: `base`, else `base_1`, `base_2`, ...
    pub fn fresh_name(&mut self, base: &str) -> String {
        if !self.names.contains_key(base) {
            return base.to_string();
        }
        let start = self.next_suffix.get(base).copied().unwrap_or(1);
        let (i, name) = (start..).map(|i| (i, format!("{base}_{i}"))).find(|(_, n)| !self.names.contains_key(n)).expect("some suffix is free");
        self.next_suffix.insert(base.to_string(), i + 1);
        name
    }

    /// Add a node whose operands are `operands`, in order. The name is made unique.
    pub fn add(&mut self, mut node: Node, operands: &[NodeId]) -> NodeId {
        node.name = self.fresh_name(&node.name);
        let name = node.name.clone();
        let id = self.g.add_node(node);
        for (pos, &o) in operands.iter().enumerate() {
            self.g.add_edge(o, id, pos);
        }
        self.names.insert(name, id);
        id
    }

    /// Give a node another (unused) name.
    pub fn rename(&mut self, id: NodeId, name: String) {
        debug_assert!(!self.names.contains_key(&name), "{name} is taken");
        let old = std::mem::replace(&mut self.g[id].name, name.clone());
        self.names.remove(&old);
        self.names.insert(name, id);
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.g[id]
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.g[id]
    }

    pub fn by_name(&self, name: &str) -> Option<NodeId> {
        self.names.get(name).copied()
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.g.contains_node(id)
    }

    pub fn node_count(&self) -> usize {
        self.g.node_count()
    }

    /// Operands of `id` in position order.
    pub fn operands(&self, id: NodeId) -> Vec<NodeId> {
        let mut edges: Vec<(usize, NodeId)> = self.g.edges_directed(id, Direction::Incoming).map(|e| (*e.weight(), e.source())).collect();
        edges.sort_unstable();
        edges.into_iter().map(|(_, n)| n).collect()
    }

    /// Users of `id` with the operand position they use it at, deterministic order.
    pub fn users(&self, id: NodeId) -> Vec<(NodeId, usize)> {
        let mut u: Vec<(NodeId, usize)> = self.g.edges_directed(id, Direction::Outgoing).map(|e| (e.target(), *e.weight())).collect();
        u.sort_unstable();
        u
    }

    pub fn is_output(&self, id: NodeId) -> bool {
        self.outputs.iter().any(|(_, o)| *o == id)
    }

    /// Operand types of `id`, in order.
    pub fn operand_types(&self, id: NodeId) -> Vec<&TensorType> {
        self.operands(id).into_iter().map(|o| &self.g[o].ty).collect()
    }

    /// Make every use of `old` (as an operand or as an output) use `new` instead.
    pub fn replace_uses(&mut self, old: NodeId, new: NodeId) {
        for (user, pos) in self.users(old) {
            if let Some(e) = self.g.find_edge(old, user) {
                self.g.remove_edge(e);
            }
            self.g.add_edge(new, user, pos);
        }
        for (_, o) in self.outputs.iter_mut() {
            if *o == old {
                *o = new;
            }
        }
    }

    /// Replace the operands of `id`.
    pub fn set_operands(&mut self, id: NodeId, operands: &[NodeId]) {
        let incoming: Vec<_> = self.g.edges_directed(id, Direction::Incoming).map(|e| e.id()).collect();
        for e in incoming {
            self.g.remove_edge(e);
        }
        for (pos, &o) in operands.iter().enumerate() {
            self.g.add_edge(o, id, pos);
        }
    }

    pub fn remove(&mut self, id: NodeId) {
        if let Some(node) = self.g.remove_node(id) {
            self.names.remove(&node.name);
        }
        self.inputs.retain(|&i| i != id);
    }

    /// All nodes in a deterministic topological order: among ready nodes, the oldest first.
    pub fn topo_order(&self) -> Vec<NodeId> {
        let mut pending: HashMap<NodeId, usize> = self.g.node_indices().map(|n| (n, self.g.edges_directed(n, Direction::Incoming).count())).collect();
        let mut ready: BTreeSet<NodeId> = pending.iter().filter(|(_, &d)| d == 0).map(|(&n, _)| n).collect();
        let mut order = Vec::with_capacity(pending.len());
        while let Some(n) = ready.pop_first() {
            order.push(n);
            for e in self.g.edges_directed(n, Direction::Outgoing) {
                let d = pending.get_mut(&e.target()).expect("every node is pending");
                *d -= 1;
                if *d == 0 {
                    ready.insert(e.target());
                }
            }
        }
        order
    }

    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.g.node_indices()
    }

    /// Whether the edge structure has a cycle (the verifier's check; passes never make one).
    pub fn has_cycle(&self) -> bool {
        petgraph::algo::is_cyclic_directed(&self.g)
    }

    /// Names of every parameter node, sorted.
    pub fn param_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.g.node_indices().filter(|&n| matches!(self.g[n].kind, NodeKind::Param)).map(|n| self.g[n].name.clone()).collect();
        v.sort();
        v
    }
}
