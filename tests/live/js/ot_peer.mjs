// ot.js (the npm package `ot`) as a peer for tests/live/test_ot_js.py: read a JSON list of
// requests on stdin, answer a JSON list of results (same order) on stdout.
// Requests:
//   {"do": "apply", "op": OP, "doc": S}          -> {"doc": S2, "base": N, "target": M}
//   {"do": "transform", "a": OP, "b": OP}        -> {"a": OP, "b": OP}
//   {"do": "compose", "a": OP, "b": OP}          -> {"op": OP}
//   {"do": "invert", "op": OP, "doc": S}         -> {"op": OP}
//   {"do": "splice", "doc": S, "at": I, "delete": D, "insert": T}
//       an editor's change as ot.js's CodeMirror adapter builds it; `at` and `delete` count
//       code points (converted to JavaScript string indices here)   -> {"op": OP, "base": N}
// Any request that ot.js rejects answers {"error": MESSAGE}.
import ot from "ot";

const { TextOperation } = ot;

const jsIndex = (doc, codePoints) => Array.from(doc).slice(0, codePoints).join("").length;

const handle = (r) => {
  switch (r.do) {
    case "apply": {
      const op = TextOperation.fromJSON(r.op);
      return { doc: op.apply(r.doc), base: op.baseLength, target: op.targetLength };
    }
    case "transform": {
      const [a, b] = TextOperation.transform(
        TextOperation.fromJSON(r.a),
        TextOperation.fromJSON(r.b),
      );
      return { a: a.toJSON(), b: b.toJSON() };
    }
    case "compose":
      return { op: TextOperation.fromJSON(r.a).compose(TextOperation.fromJSON(r.b)).toJSON() };
    case "invert":
      return { op: TextOperation.fromJSON(r.op).invert(r.doc).toJSON() };
    case "splice": {
      const from = jsIndex(r.doc, r.at);
      const to = jsIndex(r.doc, r.at + r.delete);
      const op = new TextOperation()
        .retain(from)
        .delete(to - from)
        .insert(r.insert)
        .retain(r.doc.length - to);
      return { op: op.toJSON(), base: op.baseLength };
    }
    default:
      throw new Error(`unknown request ${JSON.stringify(r.do)}`);
  }
};

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const out = JSON.parse(input).map((r) => {
    try {
      return handle(r);
    } catch (e) {
      return { error: String(e && e.message ? e.message : e) };
    }
  });
  process.stdout.write(JSON.stringify(out));
});
