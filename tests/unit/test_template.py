"""`--format` templates must render as docker's (Go text/template) do."""

import pytest

from dockyard.cli.template import TemplateError, format_rows, render

# Abridged `GET /containers/{id}/json`, as the API returns it.
CONTAINER = {
    "Id": "4fa6e0f0c6786287e131c3852c58a2e01cc697a68231826813597e4994f1d6e2",
    "Name": "/web",
    "State": {
        "Status": "running",
        "Running": True,
        "Paused": False,
        "Pid": 4242,
        "ExitCode": 0,
        "Health": None,
    },
    "Config": {
        "Image": "nginx:latest",
        "Cmd": ["nginx", "-g", "daemon off;"],
        "Env": None,
        "Labels": {"com.example.team": "web", "a": "1", "empty": ""},
    },
    "Mounts": [
        {"Type": "volume", "Destination": "/data", "RW": True},
        {"Type": "bind", "Destination": "/etc/nginx", "RW": False},
    ],
    "NetworkSettings": {
        "Networks": {"bridge": {"IPAddress": "172.17.0.2"}},
        "Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]},
    },
}
STOPPED = {**CONTAINER, "State": {"Status": "exited", "Running": False, "ExitCode": 137}}


def test_template_error_is_a_value_error() -> None:
    assert issubclass(TemplateError, ValueError)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{.Name}}", "/web"),
        ("{{.Config.Image}}\t{{.Name}}", "nginx:latest\t/web"),
        ("{{.State.Status}} pid={{.State.Pid}}", "running pid=4242"),
        ("name: {{ .Name }}!", "name: /web!"),
        # Go prints a missing map key as <no value>, also below it; JSON null is <nil>.
        ("{{.Nope}}", "<no value>"),
        ("{{.Nope.Deeper}}", "<no value>"),
        ("{{.State.Health}}", "<nil>"),
        ("{{.State.Running}} {{.State.Paused}}", "true false"),
        ("{{.Config.Cmd}}", "[nginx -g daemon off;]"),
        ("{{.Config.Labels}}", "map[a:1 com.example.team:web empty:]"),
        (
            "{{.Mounts}}",
            "[map[Destination:/data RW:true Type:volume] "
            "map[Destination:/etc/nginx RW:false Type:bind]]",
        ),
        ("{{(index .Mounts 1).Destination}}", "/etc/nginx"),
        ('{{(index (index .NetworkSettings.Ports "80/tcp") 0).HostPort}}', "8080"),
    ],
)
def test_fields(template: str, expected: str) -> None:
    assert render(template, CONTAINER) == expected


def test_dot_and_root() -> None:
    assert render("{{.}}", ["a", "b"]) == "[a b]"
    assert render("{{.}}", {"b": 2, "a": [1, None]}) == "map[a:[1 <nil>] b:2]"
    assert render("{{range .Mounts}}{{$.Name}}:{{.Destination}} {{end}}", CONTAINER) == (
        "/web:/data /web:/etc/nginx "
    )


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        # Compact, keys in the order given, no HTML escaping (docker turns it off).
        (
            "{{json .State}}",
            '{"Status":"running","Running":true,"Paused":false,"Pid":4242,'
            '"ExitCode":0,"Health":null}',
        ),
        ("{{json .Config.Cmd}}", '["nginx","-g","daemon off;"]'),
        ("{{json .Config.Env}}", "null"),
        ("{{json .Nope}}", "null"),
        ("{{json .Name}}", '"/web"'),
        ('{{json "<a&b> \\"é\\"\\n\\t\\x01"}}', '"<a&b> \\"é\\"\\n\\t\\u0001"'),
        (
            "{{json .Mounts}}",
            '[{"Type":"volume","Destination":"/data","RW":true},'
            '{"Type":"bind","Destination":"/etc/nginx","RW":false}]',
        ),
    ],
)
def test_json(template: str, expected: str) -> None:
    assert render(template, CONTAINER) == expected


@pytest.mark.parametrize(
    ("value", "printed", "as_json"),
    [
        (0.5, "0.5", "0.5"),
        (100.0, "100", "100"),
        (123456.0, "123456", "123456"),
        (1000000.0, "1e+06", "1000000"),
        (0.0001, "0.0001", "0.0001"),
        (0.00001, "1e-05", "0.00001"),
        (1e-7, "1e-07", "1e-7"),
        (1e21, "1e+21", "1e+21"),
        (-2.5, "-2.5", "-2.5"),
    ],
)
def test_floats_print_like_go(value: float, printed: str, as_json: str) -> None:
    assert render("{{.}} {{json .}}", value) == f"{printed} {as_json}"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ('{{index .Config.Labels "com.example.team"}}', "web"),
        ('{{index .Config.Labels "missing"}}', "<no value>"),
        ("{{index .Config.Cmd 0}}", "nginx"),
        ('{{index .NetworkSettings.Networks "bridge" "IPAddress"}}', "172.17.0.2"),
        ("{{len .Mounts}} {{len .Config.Labels}} {{len .Name}} {{len .Config.Env}}", "2 3 4 0"),
        ("{{range .Mounts}}{{.Destination}} {{end}}", "/data /etc/nginx "),
        ("{{range $i, $m := .Mounts}}{{$i}}={{$m.Type}};{{end}}", "0=volume;1=bind;"),
        (
            "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}},{{end}}",  # sorted keys
            "a=1,com.example.team=web,empty=,",
        ),
        ("{{range .Config.Labels}}[{{.}}]{{end}}", "[1][web][]"),
        ("{{range .Config.Env}}x{{else}}no env{{end}}", "no env"),
        ("{{range .Nope}}x{{else}}none{{end}}", "none"),
        ("{{with .State}}{{.Status}}/{{.ExitCode}}{{end}}", "running/0"),
        ("{{with .State.Health}}{{.Status}}{{else}}no healthcheck{{end}}", "no healthcheck"),
        ("{{with $s := .State.Status}}{{$s}}{{end}}", "running"),
        ("{{$n := .Name}}{{range .Mounts}}{{$n}}{{end}}", "/web/web"),
        ("{{$x := 1}}{{if true}}{{$x := 2}}{{$x}}{{end}}{{$x}}", "21"),
    ],
)
def test_index_len_range_with_variables(template: str, expected: str) -> None:
    assert render(template, CONTAINER) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [(CONTAINER, "up 4242"), (STOPPED, "down (137)")],
)
def test_if_else(data: dict[str, object], expected: str) -> None:
    template = (
        "{{if .State.Running}}up {{.State.Pid}}"
        "{{else if .State.Paused}}paused"
        "{{else}}down ({{.State.ExitCode}}){{end}}"
    )
    assert render(template, data) == expected


@pytest.mark.parametrize(
    ("value", "truth"),
    [
        (True, "yes"),
        (False, "no"),
        (0, "no"),
        (1, "yes"),
        ("", "no"),
        ("x", "yes"),
        ([], "no"),
        ([0], "yes"),
        ({}, "no"),
        (None, "no"),
        (0.0, "no"),
    ],
)
def test_go_truthiness(value: object, truth: str) -> None:
    assert render("{{if .V}}yes{{else}}no{{end}}", {"V": value}) == truth
    assert render("{{if .Missing}}yes{{else}}no{{end}}", {"V": value}) == "no"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{.State.Status | upper}}", "RUNNING"),
        ('{{upper "abc"}} {{lower "ÀBC"}} {{upper "straße"}}', "ABC àbc STRAßE"),
        ('{{title "hello big-world o_k"}}', "Hello Big-World O_k"),
        ('{{join .Config.Cmd " "}}', "nginx -g daemon off;"),
        ('{{join .Config.Env ","}}', ""),
        ('{{split "a,b" ","}} {{len (split "a,b,c" ",")}}', "[a b] 3"),
        ("{{truncate .Id 12}}", "4fa6e0f0c678"),
        ('[{{pad "x" 1 2}}][{{pad "" 1 2}}]', "[ x  ][]"),
        ('{{.Id | printf "%.12s"}}', "4fa6e0f0c678"),
        ('{{printf "%s has %d mounts" .Name (len .Mounts)}}', "/web has 2 mounts"),
        (
            '{{printf "%v %v %v %v" .State.Running .Config.Cmd .State.Health .Nope}}',
            "true [nginx -g daemon off;] <nil> <nil>",
        ),
        ('{{printf "%q" .Name}} {{printf "%q" "a\\"b\\n"}}', '"/web" "a\\"b\\n"'),
        (
            '{{printf "|%-8s|%8s|%05d|%-4d|%.3d|" "ab" "cd" -42 7 5}}',
            "|ab      |      cd|-0042|7   |005|",
        ),
        ('{{printf "100%%"}}', "100%"),
        ('{{printf "%d %s" 1}}', "1 %!s(MISSING)"),
        ('{{printf "%d" "x"}} {{printf "%s" 5}}', "%!d(string=x) %!s(int=5)"),
        ('{{printf "%s" "a" 2}}', "a%!(EXTRA int=2)"),
        ("{{println .Name 1 true}}", "/web 1 true\n"),
        ('{{print 1 2 "a" "b" 3}}', "1 2ab3"),
    ],
)
def test_functions(template: str, expected: str) -> None:
    assert render(template, CONTAINER) == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ('{{if eq .State.Status "running"}}yes{{end}}', "yes"),
        ('{{if eq .State.Status "paused" "running"}}yes{{end}}', "yes"),
        ('{{if ne .State.Status "running"}}yes{{else}}no{{end}}', "no"),
        ("{{eq .State.Health nil}} {{eq .Nope nil}}", "true true"),
        ('{{lt 1 2}} {{le 2 2}} {{gt 1.5 2}} {{ge "b" "a"}}', "true true false true"),
        ("{{not .State.Running}} {{not .Config.Env}}", "false true"),
        ("{{and .State.Running .State.Pid}} {{and .State.Paused .Nope.X}}", "4242 false"),
        ('{{or .Config.Env "no env"}} {{or .Name .Nope}}', "no env /web"),
        # and/or stop at the first deciding argument, like Go's
        (
            "{{if and .Config.Env (index .Config.Env 5)}}x{{else}}short-circuit{{end}}",
            "short-circuit",
        ),
    ],
)
def test_comparisons_and_logic(template: str, expected: str) -> None:
    assert render(template, CONTAINER) == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ('{{"tab\\there" | printf "%s"}}', "tab\there"),
        ('{{"\\x41\\u00e9\\101\\\\"}}', "Aé" + "A\\"),
        ("{{`raw \\n {{`}}", "raw \\n {{"),
        ('{{"}}"}}', "}}"),
        ("{{1.5}} {{-3}} {{true}}", "1.5 -3 true"),
    ],
)
def test_literals(template: str, expected: str) -> None:
    assert render(template, {}) == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("a  {{- .Name -}}  b", "a/webb"),
        ("a \n {{- .Name}} \n b", "a/web \n b"),
        ("{{range .Mounts}}\n  {{- .Destination}}\n{{- end}}", "/data/etc/nginx"),
        ("x{{/* a comment */}}y", "xy"),
        ("x  {{- /* multi\nline */ -}}  y", "xy"),
        ("{{-3}}", "-3"),  # no space after "-": a number, not a trim marker
    ],
)
def test_trim_markers_and_comments(template: str, expected: str) -> None:
    assert render(template, CONTAINER) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{.Name", "unclosed action"),
        ("ok {{.Name}} {{json .", "unclosed action (line 1, column 14)"),
        ("{{.Name}}\n{{ bogus .Name }}", 'function "bogus" not defined (line 2, column 1)'),
        ("{{if .State.Running}}up", "missing {{end}}"),
        ("{{range .Mounts}}{{.Type}}", "missing {{end}}"),
        ("{{end}}", "unexpected {{end}}"),
        ("{{else}}", "unexpected {{else}}"),
        ("{{if 1}}a{{else}}b{{else}}c{{end}}", "more than one {{else}}"),
        ("{{}}", "missing value for command"),
        ("{{if}}x{{end}}", "missing value for if"),
        ('{{"abc}}', "unterminated string"),
        ("{{$nope}}", "undefined variable $nope"),
        ("{{$x = 1}}", "not supported"),
        ('{{template "x"}}', "{{template}} is not supported"),
        ("{{index .Mounts 0 |}}", "missing command after |"),
        ("{{(len .Mounts}}", "unclosed left paren"),
        ("{{.Name | .State}}", "pipeline stage 2 is not a function call"),
        ('{{.Name "x"}}', "can't give arguments to a non-function"),
        ("{{nil}}", "nil is not a command"),
        ('{{"\\q"}}', "invalid escape \\q"),
        ("{{.Name ^ 1}}", "unexpected '^'"),
        ('{{printf "%x" 1}}', "unsupported directive '%x'"),
        ("{{.Name.First}}", "can't evaluate field First in type string"),
        ("{{.State.Health.Status}}", "nil pointer evaluating .State.Health.Status"),
        ("{{index .Mounts 9}}", "index out of range: 9"),
        ("{{index .Config.Labels 1}}", "map key must be a string"),
        ("{{range .Name}}{{end}}", "range can't iterate over /web"),
        ("{{upper .State.Pid}}", "upper: expected a string, got int"),
        ("{{len}}", "wrong number of args for len: want 1 got 0"),
        ('{{eq .State.Pid "4242"}}', "incompatible types for comparison"),
        ("{{lt .Mounts 1}}", "cannot compare values of type"),
    ],
)
def test_errors(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as err:
        render(template, CONTAINER)
    assert message in str(err.value)


# --- format_rows: docker ps / images ---------------------------------------------------

ROWS = [
    {
        "ID": "4fa6e0f0c678",
        "Image": "nginx:latest",
        "Names": "web",
        "Ports": "0.0.0.0:8080->80/tcp",
        "Labels": {"tier": "front"},
    },
    {"ID": "9b1deb4d3b7d", "Image": "redis", "Names": "cache-primary", "Ports": "", "Labels": {}},
]
HEADERS = {
    "ID": "CONTAINER ID",
    "Image": "IMAGE",
    "Names": "NAMES",
    "Ports": "PORTS",
    "Labels": "LABELS",
}


def test_plain_format_is_one_line_per_row() -> None:
    # The user types backslash-t: docker turns it into a tab, with no alignment.
    assert format_rows("{{.ID}}\\t{{.Names}}", ROWS, HEADERS) == (
        "4fa6e0f0c678\tweb\n9b1deb4d3b7d\tcache-primary\n"
    )
    assert format_rows("{{.Names}}\\n{{.Image}}", ROWS[:1], HEADERS) == "web\nnginx:latest\n"
    assert format_rows("  {{.Names}}  ", ROWS, HEADERS) == "web\ncache-primary\n"
    assert format_rows("{{.ID}}", [], HEADERS) == ""


def test_table_aligns_columns_under_headers() -> None:
    out = format_rows("table {{.ID}}\\t{{.Image}}\\t{{.Ports}}\\t{{.Names}}", ROWS, HEADERS)
    assert out == (
        "CONTAINER ID   IMAGE          PORTS                  NAMES\n"
        "4fa6e0f0c678   nginx:latest   0.0.0.0:8080->80/tcp   web\n"
        "9b1deb4d3b7d   redis                                 cache-primary\n"
    )


def test_table_columns_are_at_least_ten_wide() -> None:
    # docker's tabwriter: minwidth 10, padding 3 (as in `docker images`' TAG column)
    rows = [{"Repository": "nginx", "Tag": "latest", "Size": "187MB"}]
    headers = {"Repository": "REPOSITORY", "Tag": "TAG", "Size": "SIZE"}
    assert format_rows("table {{.Repository}}\t{{.Tag}}\t{{.Size}}", rows, headers) == (
        "REPOSITORY   TAG       SIZE\nnginx        latest    187MB\n"
    )


def test_table_header_goes_through_the_template() -> None:
    fmt = 'table {{.Names | upper}}\\t{{index .Labels "tier"}}\\t{{.Status}}'
    assert format_rows(fmt, ROWS, HEADERS) == (
        "NAMES           LABELS       STATUS\n"
        "WEB             front        <no value>\n"
        "CACHE-PRIMARY   <no value>   <no value>\n"
    )


def test_table_without_rows_prints_the_header() -> None:
    assert format_rows("table {{.ID}}\\t{{.Names}}", [], HEADERS) == "CONTAINER ID   NAMES\n"


def test_table_with_wide_characters() -> None:
    # East Asian wide characters take two cells, as go-runewidth counts them.
    rows = [{"Names": "数据库服务", "ID": "1"}, {"Names": "db", "ID": "2"}]
    assert format_rows("table {{.Names}}\\t{{.ID}}", rows, HEADERS) == (
        "NAMES        CONTAINER ID\n数据库服务   1\ndb           2\n"
    )


def test_json_format_prints_one_object_per_row() -> None:
    assert format_rows("json", ROWS[:1], HEADERS) == (
        '{"ID":"4fa6e0f0c678","Image":"nginx:latest","Names":"web",'
        '"Ports":"0.0.0.0:8080->80/tcp","Labels":{"tier":"front"}}\n'
    )
    assert format_rows("{{json .Labels}}", ROWS, HEADERS) == '{"tier":"front"}\n{}\n'


def test_format_errors_surface_even_without_rows() -> None:
    with pytest.raises(TemplateError, match="not defined"):
        format_rows("table {{.ID | shout}}", [], HEADERS)
