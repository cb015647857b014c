# Datasets: download (paper mode) or generate (demo mode), normalise, assemble per task.


rule download:
    output:
        "<resources>/{source}/DONE.json",
    log:
        "<logs>/download/{source}.log",
    retries: 3
    localrule: True
    conda:
        "../envs/ftft.yaml"
    params:
        url=lambda w: PLAN.download_params(w.source)["url"],
        extra=lambda w: PLAN.download_params(w.source)["extra"],
        out=parent_dir(0, of="output"),
    shell:
        "ftft download --source {wildcards.source} --url {params.url:q} "
        "--out {params.out:q} {params.extra} > {log} 2>&1"


rule prepare:
    input:
        lambda w: PLAN.prepare_inputs(w.source),
    output:
        data="<results>/data/sources/{source}.parquet",
        summary="<results>/data/sources/{source}.summary.json",
    log:
        "<logs>/prepare/{source}.log",
    conda:
        "../envs/ftft.yaml"
    params:
        extra=lambda w: PLAN.prepare_extra(w.source),
    shell:
        "ftft prepare --source {wildcards.source} {params.extra} "
        "--out {output.data} --summary {output.summary} > {log} 2>&1"


rule demo_data:
    output:
        data="<results>/data/sources/demo_{kind}.parquet",
        summary="<results>/data/sources/demo_{kind}.summary.json",
    log:
        "<logs>/demo_data/{kind}.log",
    conda:
        "../envs/ftft.yaml"
    params:
        extra=lambda w: PLAN.demo_data_params(w.kind),
    shell:
        "ftft demo-data --task {wildcards.kind} --out {output.data} "
        "--summary {output.summary} {params.extra} > {log} 2>&1"


# One rule per task: its evaluation sets (hence its outputs) come from the config.
for _task in PLAN.cfg["tasks"]:

    rule:
        name:
            f"assemble_{_task}"
        input:
            PLAN.task_sources(_task),
        output:
            train=PLAN.task_train_file(_task),
            evals=PLAN.task_eval_files(_task),
        log:
            f"<logs>/assemble/{_task}.log",
        localrule: True
        conda:
            "../envs/ftft.yaml"
        params:
            spec=PLAN.assemble_spec(_task),
            sources_dir=parent_dir(0),
            out_dir=parent_dir("train", of="output"),
        shell:
            "ftft assemble --spec {params.spec:q} --sources-dir {params.sources_dir:q} "
            "--out-dir {params.out_dir:q} > {log} 2>&1"
