# Datasets: download (paper mode) or generate (demo mode), normalise, assemble per task.


rule download:
    output:
        L.download_marker(),
    log:
        L.log("download", "{source}"),
    localrule: True
    conda:
        "../envs/ftft.yaml"
    params:
        args=lambda w: PLAN.download_args(w.source),
        out=lambda w: L.download_dir(w.source),
    shell:
        "ftft download --source {wildcards.source:q} --out {params.out:q} {params.args} > {log:q} 2>&1"


rule prepare:
    input:
        lambda w: PLAN.prepare_inputs(w.source),
    output:
        data=L.source(),
        summary=L.source_summary(),
    log:
        L.log("prepare", "{source}"),
    conda:
        "../envs/ftft.yaml"
    params:
        args=lambda w: PLAN.prepare_args(w.source),
    shell:
        "ftft prepare --source {wildcards.source:q} {params.args} "
        "--out {output.data:q} --summary {output.summary:q} > {log:q} 2>&1; "
        "grep ' WARNING ' {log:q} >&2 || true"


rule demo_data:
    output:
        data=L.source("demo_{kind}"),
        summary=L.source_summary("demo_{kind}"),
    log:
        L.log("demo_data", "{kind}"),
    conda:
        "../envs/ftft.yaml"
    params:
        args=lambda w: PLAN.demo_data_args(w.kind),
    shell:
        "ftft demo-data --task {wildcards.kind:q} --out {output.data:q} "
        "--summary {output.summary:q} {params.args} > {log:q} 2>&1"


rule assemble:
    input:
        lambda w: PLAN.task_sources(w.task),
    output:
        train=L.task_train(),
        evals=directory(L.task_eval_dir()),
    log:
        L.log("assemble", "{task}"),
    localrule: True
    conda:
        "../envs/ftft.yaml"
    params:
        spec=lambda w: PLAN.assemble_spec(w.task),
        sources_dir=L.res("data/sources"),
    shell:
        "ftft assemble --spec {params.spec:q} --sources-dir {params.sources_dir:q} "
        "--train {output.train:q} --eval-dir {output.evals:q} > {log:q} 2>&1"
