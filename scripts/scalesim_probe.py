"""Run SCALE-Sim (PyPI `scalesim`) on GEMM layers and print its compute "Total Cycles".

Usage: python scalesim_probe.py ROWS COLS ws|os M,N,K [M,N,K ...]
Prints one line per layer: M N K total_cycles.
"""
import os, sys, tempfile, csv, contextlib, io

CONFIG = """[general]
run_name = probe

[architecture_presets]
ArrayHeight:    {rows}
ArrayWidth:     {cols}
IfmapSramSzkB:    65536
FilterSramSzkB:   65536
OfmapSramSzkB:    65536
IfmapOffset:    0
FilterOffset:   10000000
OfmapOffset:    20000000
Dataflow : {df}
Bandwidth : 10
ReadRequestBuffer: 32
WriteRequestBuffer: 32

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport : false
SparseRep : ellpack_block
OptimizedMapping : false
BlockSize : 8
RandomNumberGeneratorSeed : 40

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""


def total_cycles(rows, cols, df, layers):
    """layers: list of (name, M, N, K). Returns {name: total cycles}."""
    from scalesim.scale_sim import scalesim
    with tempfile.TemporaryDirectory() as d:
        cfg = os.path.join(d, "probe.cfg")
        with open(cfg, "w") as f:
            f.write(CONFIG.format(rows=rows, cols=cols, df=df))
        topo = os.path.join(d, "topo.csv")
        with open(topo, "w") as f:
            f.write("Layer, M, N, K,\n")
            for name, m, n, k in layers:
                f.write(f"{name}, {m}, {n}, {k},\n")
        layout = os.path.join(d, "layout.csv")
        with open(layout, "w") as f:
            f.write("Layer name, IFMAP Height Intraline Factor, IFMAP Width Intraline Factor, Filter Height Intraline Factor, Filter Width Intraline Factor, Channel Intraline Factor, Num Filter Intraline Factor, IFMAP Height Intraline Order, IFMAP Width Intraline Order, Channel Intraline Order, IFMAP Height Interline Order, IFMAP Width Interline Order, Channel Interline Order, Filter Height Intraline Order, Filter Width Intraline Order, Channel Intraline Order, Num Filter Intraline Order, Filter Height Interline Order, Filter Width Interline Order, Channel Interline Order, Num Filter Interline Order,\n")
        out = os.path.join(d, "out")
        os.makedirs(out)
        with contextlib.redirect_stdout(io.StringIO()):
            s = scalesim(save_disk_space=True, verbose=False, config=cfg, topology=topo, layout=layout, input_type_gemm=True)
            s.run_scale(top_path=out)
        result = {}
        for root, _, files in os.walk(out):
            if "COMPUTE_REPORT.csv" in files:
                with open(os.path.join(root, "COMPUTE_REPORT.csv")) as f:
                    rows_ = list(csv.reader(f))
                header = [h.strip() for h in rows_[0]]
                col = header.index("Total Cycles")
                for (name, *_), r in zip(layers, rows_[1:]):
                    result[name] = int(float(r[col]))
        return result


if __name__ == "__main__":
    rows, cols, df = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    layers = []
    for i, spec in enumerate(sys.argv[4:]):
        m, n, k = (int(v) for v in spec.split(","))
        layers.append((f"l{i}", m, n, k))
    res = total_cycles(rows, cols, df, layers)
    for name, m, n, k in layers:
        print(m, n, k, res[name])
