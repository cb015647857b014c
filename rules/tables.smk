# Paper tables and figures from run outputs, and the comparison with the published numbers.
# One rule per table / figure (its report caption differs); each job's inputs are exactly
# the files it reads (ftft.tables.table_inputs, ftft.figures.figure_inputs).


rule config_json:
    output:
        "<results>/config.json",
    log:
        "<logs>/config_json.log",
    localrule: True
    conda:
        "../envs/ftft.yaml"
    params:
        config=PLAN.config_dump(),
    shell:
        "printf '%s\\n' {params.config:q} > {output} 2> {log}"


for _tid in PLAN.table_ids:

    rule:
        name:
            f"table_{_tid}"
        input:
            config=PLAN.config_json(),
            runs=PLAN.table_inputs(_tid),
        output:
            csv=report(
                f"<results>/tables/table{_tid}.csv",
                caption=f"../src/ftft/report/{PLAN.table_caption(_tid)}",
                category="Tables",
                labels={"table": _tid},
            ),
            md=f"<results>/tables/table{_tid}.md",
            tex=f"<results>/tables/table{_tid}.tex",
        log:
            f"<logs>/table/table{_tid}.log",
        localrule: True
        conda:
            "../envs/ftft.yaml"
        params:
            tid=_tid,
        shell:
            "ftft table --id {params.tid} --config-json {input.config} "
            '--results "$(dirname {input.config:q})" '
            '--out-prefix "$(dirname {output.csv:q})/table{params.tid}" > {log} 2>&1'


for _fid, _variants in PLAN.figure_groups.items():

    rule:
        name:
            f"figure_{_fid}"
        input:
            config=PLAN.config_json(),
            runs=lambda w, _fid=_fid: PLAN.figure_inputs(_fid, w.variant),
        output:
            png=report(
                f"<results>/figures/figure{_fid}_{{variant}}.png",
                caption=f"../src/ftft/report/{PLAN.figure_caption(_fid)}",
                category="Figures",
                labels={"figure": _fid, "panel": "{variant}"},
            ),
            pdf=f"<results>/figures/figure{_fid}_{{variant}}.pdf",
        log:
            f"<logs>/figure/figure{_fid}_{{variant}}.log",
        localrule: True
        conda:
            "../envs/ftft.yaml"
        params:
            args=lambda w, _fid=_fid: PLAN.figure_args(_fid, w.variant),
            fid=_fid,
        shell:
            "ftft figure {params.args} --config-json {input.config} "
            '--results "$(dirname {input.config:q})" '
            '--out-prefix "$(dirname {output.png:q})/figure{params.fid}_{wildcards.variant}" '
            "> {log} 2>&1"


rule compare:
    input:
        config=PLAN.config_json(),
        tables=PLAN.compare_inputs(),
    output:
        csv=report(
            "<results>/tables/paper_comparison.csv",
            caption="../src/ftft/report/paper_comparison.rst",
            category="Comparison with the paper",
        ),
        md="<results>/tables/paper_comparison.md",
    log:
        "<logs>/compare.log",
    localrule: True
    conda:
        "../envs/ftft.yaml"
    shell:
        "ftft compare --config-json {input.config} "
        '--results "$(dirname {input.config:q})" '
        '--out-prefix "$(dirname {output.csv:q})/paper_comparison" > {log} 2>&1'
