"""Label and field selectors against upstream apimachinery behaviour (labels/selector_test.go,
fields/selector_test.go)."""

import pytest
from hypothesis import given, strategies as st

from kybernetes.api.selectors import (
    SelectorError, escape_field_value, unescape_field_value, field_set, label_selector_from_object, parse_field_selector,
    parse_label_selector, supported_fields,
)


@pytest.mark.parametrize("text,labels,expected", [
    ("x=a", {"x": "a"}, True),
    ("x=a", {"x": "b"}, False),
    ("x==a", {"x": "a"}, True),
    ("x!=a", {"y": "a"}, True),          # NotEquals matches a missing key
    ("x!=a", {"x": "a"}, False),
    ("x in (a,b)", {"x": "b"}, True),
    ("x in (a,b)", {}, False),
    ("x notin (a,b)", {}, True),
    ("x notin (a,b)", {"x": "a"}, False),
    ("x", {"x": ""}, True),
    ("!x", {"x": ""}, False),
    ("!x", {"y": "1"}, True),
    ("x>1", {"x": "2"}, True),
    ("x>1", {"x": "1"}, False),
    ("x<1", {"x": "-3"}, True),
    ("x>1", {"x": "abc"}, False),        # non-integer label value never matches Gt/Lt
    ("x=a,y=b", {"x": "a", "y": "b"}, True),
    ("x=a,y=b", {"x": "a"}, False),
    ("x=", {"x": ""}, True),              # empty value after '='
    ("x in (foo,,baz)", {"x": ""}, True),  # ",," stands for the empty value
    ("", {"anything": "x"}, True),
])
def test_label_selector_matching(text, labels, expected):
    """TestSelectorMatches / TestLexerParserIntegration cases."""
    assert parse_label_selector(text).matches(labels) is expected


@pytest.mark.parametrize("text,canonical", [
    ("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()"),
    ("z=1, a!=2 ,  m==3", "a!=2,m==3,z=1"),
    ("!k,j>5", "j>5,!k"),
    ("in in (notin,in)", "in in (in,notin)"),  # keywords are plain identifiers as key/values
])
def test_label_selector_string_is_sorted_and_reparses(text, canonical):
    """Parse sorts requirements by key and String() sorts in/notin values (TestSetSelectorString)."""
    sel = parse_label_selector(text)
    assert str(sel) == canonical
    assert str(parse_label_selector(str(sel))) == canonical


@pytest.mark.parametrize("text,message", [
    ("x=a,", "found '', expected: identifier after ','"),
    ("x=a y", "found 'y', expected: ',' or 'end of string'"),
    ("x y", "unable to parse requirement: found 'y', expected: in, notin, =, ==, !=, gt, lt"),
    ("x in a", "unable to parse requirement: found 'a' expected: '('"),
    ("x in (a", "unable to parse requirement: found '', expected: ',' or ')'"),
    ("=a", "found '=', expected: !, identifier, or 'end of string'"),
    ("x>a", "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer"),
    ("-x=a", "unable to parse requirement: <nil>: Invalid value: \"-x\": name part must consist of"),
    ("x=a b", "found 'b', expected: ',' or 'end of string'"),
    ("x=-a", "unable to parse requirement: values[0][x]: Invalid value: \"-a\": a valid label must be an empty string"),
    ("a/b/c=d", "a qualified name must consist of"),
    ("Example.com/x=1", "prefix part a lowercase RFC 1123 subdomain"),
])
def test_label_selector_errors(text, message):
    with pytest.raises(SelectorError) as err:
        parse_label_selector(text)
    assert message in str(err.value)


def test_label_key_too_long_is_rejected():
    with pytest.raises(SelectorError, match="name part must be no more than 63 characters"):
        parse_label_selector("a" * 64)


def test_label_selector_object():
    """LabelSelectorAsSelector: nil selects nothing, empty selects everything."""
    assert not label_selector_from_object(None).matches({})
    assert label_selector_from_object({}).matches({"a": "b"})
    sel = label_selector_from_object({
        "matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]},
                             {"key": "canary", "operator": "DoesNotExist"}],
    })
    assert sel.matches({"app": "web", "tier": "fe"})
    assert not sel.matches({"app": "web", "tier": "fe", "canary": "1"})
    assert not sel.matches({"app": "web", "tier": "db"})
    assert str(sel) == "app=web,!canary,tier in (be,fe)"
    with pytest.raises(SelectorError, match='"Bogus" is not a valid label selector operator'):
        label_selector_from_object({"matchExpressions": [{"key": "a", "operator": "Bogus"}]})
    with pytest.raises(SelectorError, match="values set can't be empty"):
        label_selector_from_object({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]})


label_names = st.text(alphabet="abcxyz0189", min_size=1, max_size=8)


@given(st.dictionaries(label_names, label_names, max_size=5), st.dictionaries(label_names, label_names, max_size=5))
def test_equality_selector_round_trips_and_matches_superset(want, extra):
    """A selector built from a set matches every superset of it, and String() parses back."""
    text = ",".join(f"{k}={v}" for k, v in want.items())
    sel = parse_label_selector(text)
    assert sel.matches({**extra, **want})
    assert str(parse_label_selector(str(sel))) == str(sel)


def test_field_selector_parse_and_match():
    sel = parse_field_selector("spec.nodeName=node1,status.phase!=Failed")
    assert sel.matches({"spec.nodeName": "node1", "status.phase": "Running"})
    assert not sel.matches({"spec.nodeName": "node1", "status.phase": "Failed"})
    assert not sel.matches({"spec.nodeName": "node2"})
    assert parse_field_selector("").matches({})
    assert parse_field_selector("metadata.name==x").matches({"metadata.name": "x"})
    assert parse_field_selector("spec.nodeName=").matches({})  # missing field reads as ""


def test_field_selector_escaping():
    """fields.EscapeValue/UnescapeValue: `\\,` `\\=` `\\\\` (TestSelectorParse escapes)."""
    sel = parse_field_selector(r"a=x\,y\=z\\w")
    assert sel.matches({"a": "x,y=z\\w"})
    assert str(sel) == r"a=x\,y\=z\\w"
    with pytest.raises(SelectorError, match="invalid escape sequence: \\\\q"):
        parse_field_selector(r"a=\q")
    with pytest.raises(SelectorError, match="unescaped character in value: ="):
        parse_field_selector("a=b=c")
    with pytest.raises(SelectorError, match="invalid selector: 'abc'; can't understand 'abc'"):
        parse_field_selector("abc")


@given(st.text(alphabet="ab,=\\ ", max_size=12))
def test_field_escape_round_trip(value):
    """EscapeValue then UnescapeValue is the identity; an escaped value selects itself."""
    assert unescape_field_value(escape_field_value(value)) == value
    assert parse_field_selector("f=" + escape_field_value(value)).matches({"f": value})


def test_field_set_pod():
    pod = {"metadata": {"name": "p", "namespace": "ns"},
           "spec": {"nodeName": "n1", "restartPolicy": "Always", "hostNetwork": True},
           "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}, {"ip": "fd00::5"}]}}
    fs = field_set("Pod", pod)
    assert fs["metadata.name"] == "p" and fs["metadata.namespace"] == "ns"
    assert fs["spec.nodeName"] == "n1" and fs["spec.hostNetwork"] == "true"
    assert fs["status.podIP"] == "10.0.0.5" and fs["spec.schedulerName"] == ""
    assert parse_field_selector("spec.nodeName=n1,status.phase=Running").matches(fs)


def test_field_set_event_source_falls_back_to_reporting_controller():
    ev = {"metadata": {"name": "e", "namespace": "d"}, "involvedObject": {"kind": "Pod", "name": "p", "uid": "u"},
          "reason": "Pulled", "type": "Normal", "reportingComponent": "kubelet"}
    fs = field_set("Event", ev)
    assert fs["involvedObject.uid"] == "u" and fs["source"] == "kubelet" and fs["reason"] == "Pulled"


@pytest.mark.parametrize("kind,obj,field,value", [
    ("Node", {"metadata": {"name": "n"}, "spec": {"unschedulable": True}}, "spec.unschedulable", "true"),
    ("Node", {"metadata": {"name": "n"}}, "spec.unschedulable", "false"),
    ("Secret", {"metadata": {"name": "s"}, "type": "Opaque"}, "type", "Opaque"),
    ("ReplicaSet", {"metadata": {}, "status": {"replicas": 3}}, "status.replicas", "3"),
    ("Job", {"metadata": {}, "status": {"succeeded": 2}}, "status.successful", "2"),
    ("Namespace", {"metadata": {"name": "x"}, "status": {"phase": "Active"}}, "status.phase", "Active"),
    ("CertificateSigningRequest", {"metadata": {}, "spec": {"signerName": "a/b"}}, "spec.signerName", "a/b"),
])
def test_field_set_per_kind(kind, obj, field, value):
    assert field_set(kind, obj)[field] == value
    assert field in supported_fields(kind)


def test_unsupported_field_label():
    parse_field_selector("spec.nodeName=x").check("Pod")
    parse_field_selector("metadata.namespace=x").check("ConfigMap")
    with pytest.raises(SelectorError, match="^field label not supported: spec.nodeName$"):
        parse_field_selector("spec.nodeName=x").check("Service")
    with pytest.raises(SelectorError, match="field label not supported: metadata.namespace"):
        parse_field_selector("metadata.namespace=x").check("Node")


_POD_VALUES = st.one_of(st.none(), st.sampled_from(["", "n1", "Running", "Always", "10.0.0.5"]),
                        st.booleans())


@st.composite
def _pods(draw):
    spec = {k: draw(_POD_VALUES) for k in draw(st.sets(st.sampled_from(
        ["nodeName", "restartPolicy", "schedulerName", "serviceAccountName", "hostNetwork"])))}
    status = {k: draw(_POD_VALUES) for k in draw(st.sets(st.sampled_from(
        ["phase", "nominatedNodeName", "podIP"])))}
    if draw(st.booleans()):
        status["podIPs"] = [{"ip": draw(st.sampled_from(["10.0.0.6", ""]))}]
    pod = {"metadata": {"name": "p", "namespace": draw(st.sampled_from(["a", "b"]))}}
    if draw(st.booleans()):
        pod["spec"] = spec if draw(st.booleans()) else "not a map"
    if draw(st.booleans()):
        pod["status"] = status
    return pod


@given(_pods(), st.lists(st.tuples(st.sampled_from(sorted(supported_fields("Pod"))),
                                   st.sampled_from(["=", "!="]),
                                   st.sampled_from(["", "n1", "true", "false", "a", "10.0.0.6"])),
                         min_size=1, max_size=3))
def test_api_server_pod_field_lookup_matches_the_field_set(pod, terms):
    """The API server looks a pod's fields up one at a time; the answer is the field set's."""
    from kybernetes.api.registry import Registry
    from kybernetes.apiserver.rest import Selectors

    text = ",".join(f"{f}{op}{v}" for f, op, v in terms)
    sel = Selectors({"fieldSelector": text}, Registry().get("", "v1", "pods"))
    assert sel.match(pod) == parse_field_selector(text).matches(field_set("Pod", pod))
