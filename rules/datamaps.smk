# Data maps of reference runs, and the training subsets each method hands the engine.


rule datamap:
    input:
        unpack(datamap_input),
    output:
        datamap="<results>/datamaps/{task}/{ref}/seed{seed}.parquet",
        plot=report(
            "<results>/figures/datamaps/{task}_{ref}_seed{seed}.png",
            caption="../src/ftft/report/datamap.rst",
            category="Data maps",
            labels={"task": "{task}", "reference": "{ref}", "seed": "{seed}"},
        ),
    log:
        "<logs>/datamap/{task}/{ref}/seed{seed}.log",
    conda:
        "../envs/ftft.yaml"
    params:
        q=PLAN.cfg["q"],
        run_dir=parent_dir("dynamics"),
    shell:
        "ftft datamap --run-dir {params.run_dir:q} --out {output.datamap} "
        "--plot {output.plot} --q {params.q} > {log} 2>&1"


rule subset:
    input:
        unpack(subset_input),
    output:
        "<results>/subsets/{task}/{method}-{ref}/seed{seed}.parquet",
    log:
        "<logs>/subset/{task}/{method}-{ref}/seed{seed}.log",
    wildcard_constraints:
        method="random|dm|jtt|poe",
    conda:
        "../envs/ftft.yaml"
    params:
        q=PLAN.cfg["q"],
        spec=lambda w: PLAN.subset_spec(w.task, w.method),
        extra=lambda w, input: PLAN.subset_extra(input),
    shell:
        "ftft subset --method {wildcards.method} --train {input.train} --out {output} "
        "--q {params.q} --seed {wildcards.seed} --spec {params.spec:q} {params.extra} "
        "> {log} 2>&1"
