# Data maps of reference runs, and the training subsets each method hands the engine.


rule datamap:
    input:
        unpack(lambda w: PLAN.ref_inputs(w.task, w.ref, int(w.seed))),
    output:
        datamap=L.datamap(),
        plot=report(
            L.datamap_plot(),
            caption="../src/ftft/report/datamap.rst",
            category="Data maps",
            subcategory="{task}",
            labels={"reference": "{ref}", "seed": "{seed}"},
        ),
    log:
        L.log("datamap", "{task}/{ref}/seed{seed}"),
    conda:
        "../envs/ftft.yaml"
    params:
        q=PLAN.cfg["q"],
        run_dir=lambda w, input: os.path.dirname(input.record),
    shell:
        "ftft datamap --run-dir {params.run_dir:q} --train {input.train:q} --out {output.datamap:q} "
        "--plot {output.plot:q} --q {params.q:q} > {log:q} 2>&1"


rule subset:
    input:
        unpack(lambda w: PLAN.subset_inputs(w.task, w.method, w.ref, int(w.seed))),
    output:
        L.subset(),
    log:
        L.log("subset", "{task}/{method}-{ref}/seed{seed}"),
    wildcard_constraints:
        method=WILDCARDS["subset_method"],
    conda:
        "../envs/ftft.yaml"
    params:
        args=lambda w, input: PLAN.subset_args(
            w.task, w.method, w.ref, int(w.seed), input
        ),
    shell:
        "ftft subset --method {wildcards.method:q} --train {input.train:q} --out {output:q} "
        "{params.args} > {log:q} 2>&1"


# `snakemake datamaps`: just the data maps (parquet with texts + plot) of the configured
# reference models; trains only their reference runs, nothing else.
rule datamaps:
    input:
        [f(t, r, s) for t, r, s in PLAN.datamaps for f in (L.datamap, L.datamap_plot)],
    localrule: True
