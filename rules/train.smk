# One rule trains every run: reference (= ERM of that model), main and baseline runs.
# The run folder is ftft.grid.Run.path; params hold only that run's spec, so changing one
# model's settings re-runs only the runs (and downstream files) that depend on it.


rule train:
    input:
        unpack(train_input),
    output:
        metrics="<results>/runs/{task}/{model}/{method}-{ref}/{budget}/seed{seed}/metrics.csv",
        predictions="<results>/runs/{task}/{model}/{method}-{ref}/{budget}/seed{seed}/predictions.parquet",
        dynamics="<results>/runs/{task}/{model}/{method}-{ref}/{budget}/seed{seed}/dynamics.npz",
        record="<results>/runs/{task}/{model}/{method}-{ref}/{budget}/seed{seed}/run.json",
    log:
        "<logs>/train/{task}/{model}/{method}-{ref}/{budget}/seed{seed}.log",
    benchmark:
        "<benchmarks>/train/{task}/{model}/{method}-{ref}/{budget}/seed{seed}.tsv"
    conda:
        "../envs/ftft.yaml"
    threads: PLAN.train_threads()
    resources:
        gpu=PLAN.train_gpus(),
        mem_mb=PLAN.train_mem_mb(),
        runtime=train_runtime,
        gpu_model=PLAN.gpu_model(),
    params:
        spec=train_spec,
        extra=train_extra,
        state_dir=PLAN.state_dir_pattern(),
        data_dir=f"{PLAN.results}/data/{{task}}",
    shell:
        "ftft train --spec {params.spec:q} --data-dir {params.data_dir:q} "
        '--out "$(dirname {output.record:q})" --state-dir {params.state_dir:q} {params.extra} '
        "> {log} 2>&1"
