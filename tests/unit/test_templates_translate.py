"""Go text/template → Jinja2 translation: each construct against the output Go prints."""

from __future__ import annotations

from typing import Any

import pytest
from jinja2.exceptions import SecurityError

from localmodel_runtime.templates import GoStruct, PromptTemplate, RenderError, TemplateError


def data(**fields: Any) -> GoStruct:
    return GoStruct("main.Data", fields)


def render(source: str, **fields: Any) -> str:
    return PromptTemplate("template.chat", source).render(data(**fields))


TOOL_CALL = GoStruct(
    "schema.ToolCall",
    {
        "Index": 0,
        "ID": "call_1",
        "Type": "function",
        "FunctionCall": GoStruct(
            "schema.FunctionCall",
            {"Name": "get_weather", "Arguments": '{"city":"Paris"}'},
            {"Name": ("name", False), "Arguments": ("arguments", False)},
        ),
    },
    {
        "Index": ("index", False),
        "ID": ("id", False),
        "Type": ("type", False),
        "FunctionCall": ("function", False),
    },
)

CASES: list[tuple[str, str, dict[str, Any], str]] = [
    # fields, dot, $, printing
    ("field", "Hello {{.Name}}!", {"Name": "Ann"}, "Hello Ann!"),
    ("spaced field", "{{ .Name }}", {"Name": "Ann"}, "Ann"),
    ("nested field", "{{ .M.a.b }}", {"M": {"a": {"b": 1}}}, "1"),
    ("map missing key", "[{{ .M.nope }}]", {"M": {"a": "x"}}, "[<no value>]"),
    (
        "missing key passed to a function is nil",
        "{{ print .M.nope }}|{{ default 1 .M.nope }}",
        {"M": {}},
        "<nil>|1",
    ),
    ("missing key compares unequal", '{{ eq .M.nope "x" }}', {"M": {}}, "false"),
    ("nil prints no value", "[{{ .X }}]", {"X": None}, "[<no value>]"),
    ("bools", "{{ .T }} {{ .F }} {{ true }}", {"T": True, "F": False}, "true false true"),
    ("float like Go", "{{ .A }} {{ .B }} {{ .C }}", {"A": 1.0, "B": 1e6, "C": 0.5}, "1 1e+06 0.5"),
    (
        "list and map printing",
        "{{ .L }} {{ .M }}",
        {"L": [1, "a"], "M": {"b": 2, "a": 1}},
        "[1 a] map[a:1 b:2]",
    ),
    ("root inside range", "{{ range .L }}{{ . }}{{ $.Sep }}{{ end }}", {"L": ["a", "b"], "Sep": ","}, "a,b,"),
    ("bare $", "{{ $.X }}{{ with $ }}{{ .X }}{{ end }}", {"X": "x"}, "xx"),
    # trimming: Go's `-` eats spaces, tabs and newlines on its side, only there
    ("trim both", "a \n\t {{- .X -}} \n b", {"X": "X"}, "aXb"),
    ("trim left only", "a  {{- .X }}  b", {"X": "X"}, "aX  b"),
    ("trim right only", "a  {{ .X -}}\n\n  b", {"X": "X"}, "a  Xb"),
    ("no trim without space", "{{.X}}-{{.X}}", {"X": "1"}, "1-1"),
    ("negative number is not a trim", "{{ print -3 }}", {}, "-3"),
    ("trim keeps non-ASCII space", "a\u00a0{{- .X }}", {"X": "X"}, "a\u00a0X"),
    ("trim around control", "{{- if .X -}}\n  yes\n{{- end -}}\n", {"X": True}, "yes"),
    ("comment", "a{{/* note */}}b", {}, "ab"),
    ("trimmed comment", "a  {{- /* note */ -}}  b", {}, "ab"),
    ("trailing newline kept", "{{ .X }}\n", {"X": "x"}, "x\n"),
    ("CRLF kept", "a\r\n{{ .X }}\r\n", {"X": "x"}, "a\r\nx\r\n"),
    ("jinja-looking text is text", "{% raw %}{{ .X }}{#", {"X": "x"}, "{% raw %}x{#"),
    # if / else if / else
    ("if true", "{{ if .X }}yes{{ end }}", {"X": "a"}, "yes"),
    ("if empty string", "{{ if .X }}yes{{ else }}no{{ end }}", {"X": ""}, "no"),
    ("if empty list", "{{ if .L }}yes{{ else }}no{{ end }}", {"L": []}, "no"),
    ("if zero", "{{ if .N }}yes{{ else }}no{{ end }}", {"N": 0}, "no"),
    ("if struct is true", "{{ if .S }}yes{{ end }}", {"S": data()}, "yes"),
    (
        "else if chain",
        '{{ if eq .R "a" }}A{{ else if eq .R "b" }}B{{ else if eq .R "c" }}C{{ else }}Z{{ end }}',
        {"R": "c"},
        "C",
    ),
    (
        "nested if",
        "{{ if .A }}{{ if .B }}ab{{ else }}a{{ end }}{{ else }}-{{ end }}",
        {"A": True, "B": False},
        "a",
    ),
    # range
    ("range list", "{{ range .L }}<{{ . }}>{{ end }}", {"L": ["x", "y"]}, "<x><y>"),
    (
        "range index and element",
        "{{ range $i, $e := .L }}{{ $i }}:{{ $e }} {{ end }}",
        {"L": ["x", "y"]},
        "0:x 1:y ",
    ),
    ("range one variable", "{{ range $e := .L }}{{ $e }}{{ end }}", {"L": [1, 2]}, "12"),
    (
        "range map in key order",
        "{{ range $k, $v := .M }}{{ $k }}={{ $v }};{{ end }}",
        {"M": {"b": 2, "a": 1}},
        "a=1;b=2;",
    ),
    ("range else on empty", "{{ range .L }}x{{ else }}empty{{ end }}", {"L": []}, "empty"),
    ("range else on nil", "{{ range .L }}x{{ else }}empty{{ end }}", {"L": None}, "empty"),
    (
        "range struct fields",
        "{{ range .L }}{{ .Name }},{{ end }}",
        {"L": [data(Name="a"), data(Name="b")]},
        "a,b,",
    ),
    (
        "nested range and with rebind dot",
        "{{ range .A }}[{{ range .B }}{{ . }}{{ end }}|"
        "{{ with .C }}{{ range . }}{{ . }}{{ end }}{{ end }}]{{ end }}",
        {"A": [{"B": [1, 2], "C": ["x"]}, {"B": [3], "C": []}]},
        "[12|x][3|]",
    ),
    ("range int", "{{ range 3 }}{{ . }}{{ end }}", {}, "012"),
    (
        "break and continue",
        "{{ range .L }}{{ if eq . 2 }}{{ continue }}{{ end }}"
        "{{ if eq . 4 }}{{ break }}{{ end }}{{ . }}{{ end }}",
        {"L": [1, 2, 3, 4, 5]},
        "13",
    ),
    # with
    ("with rebinds dot", "{{ with .S }}{{ .Name }}{{ end }}", {"S": data(Name="n")}, "n"),
    ("with else", "{{ with .X }}{{ . }}{{ else }}none{{ end }}", {"X": ""}, "none"),
    ("with variable", "{{ with $v := .X }}{{ $v }}{{ . }}{{ end }}", {"X": "x"}, "xx"),
    # variables
    ("declare", "{{ $x := .A }}{{ $x }}", {"A": "a"}, "a"),
    ("shadowing in if", "{{ $x := 1 }}{{ if true }}{{ $x := 2 }}{{ $x }}{{ end }}{{ $x }}", {}, "21"),
    (
        "assign from range",
        '{{ $last := "" }}{{ range .L }}{{ $last = . }}{{ end }}{{ $last }}',
        {"L": ["a", "b"]},
        "b",
    ),
    ("variable field", "{{ $s := .S }}{{ $s.Name }}", {"S": data(Name="n")}, "n"),
    # pipelines and parentheses
    ("pipeline printf", '{{ .X | printf "%s!" }}', {"X": "hi"}, "hi!"),
    ("pipeline chain", '{{ .X | upper | printf "<%s>" }}', {"X": "hi"}, "<HI>"),
    ("parenthesised", '{{ printf "%d" (add 1 2) }}', {}, "3"),
    ("parenthesised field", "{{ (index .L 0).Name }}", {"L": [data(Name="n")]}, "n"),
    ("literals", "{{ print \"a\\tb\" `raw\\n` 1.5 'x' nil }}", {}, "a\tbraw\\n1.5 120 <nil>"),
    # builtins
    ("eq multi-arg", '{{ if eq .R "a" "b" "c" }}yes{{ end }}', {"R": "b"}, "yes"),
    ("eq multi-arg false", '{{ if eq .R "a" "b" }}yes{{ else }}no{{ end }}', {"R": "z"}, "no"),
    (
        "ne lt le gt ge",
        '{{ ne 1 2 }} {{ lt 1 2 }} {{ le 2 2 }} {{ gt 1 2 }} {{ ge "b" "a" }}',
        {},
        "true true true false true",
    ),
    ("and or not", "{{ and .A .B }}|{{ or .A .B }}|{{ not .A }}", {"A": "", "B": "b"}, "|b|true"),
    (
        "and short-circuits",
        "{{ if and .S .S.Name }}{{ .S.Name }}{{ else }}none{{ end }}",
        {"S": None},
        "none",
    ),
    ("len", "{{ len .L }} {{ len .S }} {{ len .M }}", {"L": [1, 2], "S": "héllo", "M": {"a": 1}}, "2 6 1"),
    (
        "index",
        '{{ index .L 1 }} {{ index .M "k" }} {{ index .N 0 1 }}',
        {"L": ["a", "b"], "M": {"k": "v"}, "N": [[1, 2]]},
        "b v 2",
    ),
    ("slice (Sprig's)", "{{ slice .L 1 }} {{ slice .L 0 2 }}", {"L": [1, 2, 3]}, "[2 3] [1 2]"),
    ("print spacing", '{{ print 1 2 "a" 3 }}|{{ println "x" 1 }}', {}, "1 2a3|x 1\n"),
    (
        "printf verbs",
        '{{ printf "%s %d %v %q %5.2f %t %x %03d %-3s|" "s" 42 .L "q\\"" 3.14159 true 255 7 "a" }}',
        {"L": [1]},
        's 42 [1] "q\\""  3.14 true ff 007 a  |',
    ),
    (
        "printf missing and extra",
        '{{ printf "%s %s" "a" }}|{{ printf "%d" 1 2 }}',
        {},
        "a %!s(MISSING)|1%!(EXTRA int=2)",
    ),
    ("printf nil", '{{ printf "%v|%s|%d" .X .X .X }}', {"X": None}, "<nil>|%!s(<nil>)|%!d(<nil>)"),
    ("lone Go literal", "{{ true }}", {}, "true"),
    ("printf bad verb", '{{ printf "%d" "x" }}', {}, "%!d(string=x)"),
    (
        "html js urlquery",
        '{{ html "<a href=\'x\'>&" }}|{{ js "it\'s <b>" }}|{{ urlquery "a b&c" }}',
        {},
        "&lt;a href=&#39;x&#39;&gt;&amp;|it\\'s \\u003Cb\\u003E|a+b%26c",
    ),
    # Sprig: JSON
    (
        "toJson escapes HTML, sorts map keys",
        "{{ toJson .M }}",
        {"M": {"b": "<x>&", "a": [1, 2.5, None, True]}},
        '{"a":[1,2.5,null,true],"b":"\\u003cx\\u003e\\u0026"}',
    ),
    (
        "toJson struct order and json names",
        "{{ toJson .C }}",
        {"C": [TOOL_CALL]},
        '[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\\"city\\":\\"Paris\\"}"}}]',
    ),
    ("toJson line separators, raw unicode", "{{ toJson .S }}", {"S": "é\u2028\n"}, '"é\\u2028\\n"'),
    ("toRawJson keeps HTML", "{{ toRawJson .S }}", {"S": "<b>"}, '"<b>"'),
    (
        "toPrettyJson",
        "{{ toPrettyJson .M }}",
        {"M": {"b": [1], "a": {}}},
        '{\n  "a": {},\n  "b": [\n    1\n  ]\n}',
    ),
    # Sprig: strings, in Sprig's argument order
    ("trimPrefix", '{{ trimPrefix "a" .X }}', {"X": "aab"}, "ab"),
    ("replace in pipeline", '{{ .X | replace "a" "b" }}', {"X": "banana"}, "bbnbnb"),
    (
        "trim trimAll trimSuffix",
        '[{{ trim .X }}][{{ trimAll "-" "--a--" }}][{{ trimSuffix ".go" "x.go" }}]',
        {"X": "  a \n"},
        "[a][a][x]",
    ),
    (
        "upper lower title repeat",
        '{{ upper "ab" }} {{ lower "AB" }} {{ title "hello wORLD" }} {{ repeat 3 "ab" }}',
        {},
        "AB ab Hello WORLD ababab",
    ),
    (
        "contains hasPrefix hasSuffix",
        '{{ contains "an" .X }} {{ hasPrefix "ba" .X }} {{ hasSuffix "x" .X }}',
        {"X": "banana"},
        "true true false",
    ),
    (
        "quote squote cat",
        '{{ quote "a" 1 }} {{ squote "b" }} {{ cat "a" nil 1 "b" }}',
        {},
        '"a" "1" \'b\' a 1 b',
    ),
    ("indent nindent", '{{ indent 2 "a\\nb" }}|{{ nindent 2 "c" }}', {}, "  a\n  b|\n  c"),
    ("substr trunc", '{{ substr 1 3 "hello" }} {{ trunc 2 "hello" }} {{ trunc -2 "hello" }}', {}, "el he lo"),
    (
        "split splitList join",
        '{{ (split "," "a,b")._1 }} {{ splitList "," "a,b" }} {{ join "-" .L }}',
        {"L": ["x", 1]},
        "b [a b] x-1",
    ),
    (
        "default empty coalesce ternary",
        '{{ default "d" .X }} {{ default "d" "v" }} {{ empty .X }} {{ coalesce .X "" "c" }} '
        '{{ ternary "y" "n" .B }}',
        {"X": "", "B": True},
        "d v true c y",
    ),
    (
        "regex",
        '{{ regexMatch "^a.c$" "abc" }} {{ regexReplaceAll "a(x*)b" "-ab-axxb-" "${1}W" }}',
        {},
        "true -W-xxW-",
    ),
    (
        "toString atoi int",
        '{{ toString 12 }} {{ add1 (atoi "41") }} {{ int "7" }} {{ atoi "x" }}',
        {},
        "12 42 7 0",
    ),
    # Sprig: lists, dicts, arithmetic
    ("list first last", "{{ first (list 1 2 3) }} {{ last (list 1 2 3) }} {{ list }}", {}, "1 3 []"),
    (
        "dict get hasKey keys",
        '{{ $d := dict "b" 2 "a" 1 }}{{ get $d "a" }} {{ hasKey $d "z" }} {{ keys $d }} {{ $d.b }}',
        {},
        "1 false [a b] 2",
    ),
    (
        "arithmetic",
        "{{ add 1 2 3 }} {{ add1 .I }} {{ sub 5 7 }} {{ mul 2 3 4 }} {{ div -7 2 }} {{ mod -7 3 }} "
        "{{ max 1 5 3 }} {{ min 4 2 }}",
        {"I": 9},
        "6 10 -2 24 -3 -1 5 2",
    ),
    ("add with MessageIndex", "{{ add .MessageIndex 1 }}", {"MessageIndex": 2}, "3"),
    # aliases of struct fields by JSON name
    (
        "go and json field names",
        "{{ range .C }}{{ .FunctionCall.Name }}/{{ .function.name }}({{ .FunctionCall.Arguments }}){{ end }}",
        {"C": [TOOL_CALL]},
        'get_weather/get_weather({"city":"Paris"})',
    ),
]


@pytest.mark.parametrize(("source", "fields", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_go_template(source: str, fields: dict[str, Any], expected: str) -> None:
    assert render(source, **fields) == expected


@pytest.mark.parametrize(
    ("source", "fields"),
    [
        ("{{ .Missing }}", {}),  # a missing struct field is an execution error
        ("{{ .S.Name }}", {"S": None}),  # nil pointer
        ("{{ index .L 5 }}", {"L": [1]}),
        ("{{ eq .A 1 }}", {"A": "1"}),  # incompatible types
        ("{{ div 1 0 }}", {}),
        ('{{ substr 3 1 "hello" }}', {}),  # Sprig slices without a bounds check
        ('{{ slice "abc" 1 }}', {}),  # Sprig's slice replaces Go's and takes lists only
        ("{{ range .S }}{{ end }}", {"S": data()}),
        ("{{ trim .N }}", {"N": 3}),  # Go refuses an int for a string parameter
        # Bounded allocation: a template must not build gigabytes or loop for minutes.
        ('{{ repeat 1000000000 "x" }}', {}),
        ("{{ range until 2000000000 }}{{ end }}", {}),
        ("{{ range 2000000000 }}x{{ end }}", {}),
        ("{{ range $i := .N }}x{{ end }}", {"N": 10**9}),
    ],
)
def test_execution_errors(source: str, fields: dict[str, Any]) -> None:
    with pytest.raises(RenderError):
        render(source, **fields)


def test_bounds_leave_ordinary_sizes_alone() -> None:
    assert render('{{ repeat 3 "ab" }}') == "ababab"
    assert render("{{ range until 3 }}{{ . }}{{ end }}") == "012"
    assert render("{{ range 3 }}{{ . }}{{ end }}") == "012"


@pytest.mark.parametrize(
    ("source", "line", "column", "message"),
    [
        ("{{ if .X }}open", 1, 1, "has no {{end}}"),
        ("ok\n  {{ nosuchfunc .X }}", 2, 6, 'function "nosuchfunc" not defined'),
        ("{{ $y }}", 1, 4, 'undefined variable "$y"'),
        ("a\nb {{ end }}", 2, 3, "unexpected {{end}}"),
        ("{{ .X", 1, 1, "unclosed action"),
        ('{{ "abc }}', 1, 4, "unterminated quoted string"),
        ("{{ .X .Y }}", 1, 1, "can't give argument to non-function"),
        ("{{ .X | .Y }}", 1, 1, "can't give argument to non-function"),
        ("x\n\n{{ break }}", 3, 1, "outside {{range}}"),
        ('{{ define "x" }}{{ end }}', 1, 1, "not supported"),
        ('{{ printf "%s"(.X) }}', 1, 15, "unexpected '(' in operand"),
        ("{{/* c */ }}", 1, 1, "comment ends before closing delimiter"),
    ],
)
def test_load_errors_name_template_line_and_column(source: str, line: int, column: int, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        PromptTemplate("template.chat_message", source)
    error = info.value
    assert (error.template, error.line, error.column) == ("template.chat_message", line, column)
    assert message in error.message
    assert str(error).startswith(f"template.chat_message: line {line}, column {column}: ")


def test_translation_is_jinja_with_go_helpers() -> None:
    template = PromptTemplate("template.chat", "{{ if .X }}{{ .X | upper }}{{ end }}")
    assert template.is_go
    assert (
        template.jinja_source
        == "{% if go_field(go_dot, 'X') %}{{ go_print(f_upper(go_field(go_dot, 'X'))) }}{% endif %}"
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{% for m in messages %}{{ m.role }}:{{ m.content }}\n{% endfor %}", "user:hi\n"),
        ("{{ messages[0].content }}!", "hi!"),
        ("{{ Content | upper }}", "HELLO"),
    ],
)
def test_native_jinja_is_used_directly(source: str, expected: str) -> None:
    template = PromptTemplate("template.chat", source)
    assert not template.is_go
    rendered = template.render(data(Content="hello"), {"messages": [{"role": "user", "content": "hi"}]})
    assert rendered == expected


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{% set x = messages.append(1) %}",
        "{{ cycler.__init__.__globals__.os }}",
    ],
)
def test_native_jinja_is_sandboxed(source: str) -> None:
    template = PromptTemplate("template.chat", source)
    with pytest.raises(RenderError) as info:
        template.render(data(), {"messages": []})
    assert isinstance(info.value.__cause__, SecurityError)


def test_native_jinja_unsafe_attribute_is_refused() -> None:
    # The sandbox answers an unsafe attribute with an undefined value, which prints as nothing.
    template = PromptTemplate("template.chat", "[{{ messages.__class__ }}]")
    assert template.render(data(), {"messages": []}) == "[]"


def test_go_template_cannot_reach_python_attributes() -> None:
    # Field names go through go_field, never getattr: `__class__` is just a missing field.
    with pytest.raises(RenderError, match="can't evaluate field __class__"):
        render("{{ .__class__ }}")
    assert render("{{ .M.__class__ }}", M={}) == "<no value>"
