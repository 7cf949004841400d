// The page's pure helpers (flight_server/web/static/arrowroot.js), run with node's own test runner:
//   node --test tests/js/
const test = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");

const ar = require(path.join(__dirname, "..", "..", "flight_server", "web", "static", "arrowroot.js"));

test("steps: one y per edge, the last bin's value repeated to close the step", () => {
  const [xs, ys] = ar.steps([0, 1, 2, 4], [5, 7, 1]);
  assert.deepEqual(xs, [0, 1, 2, 4]);
  assert.deepEqual(ys, [5, 7, 1, 1]);
  assert.deepEqual(ar.steps([0, 1], []), [[0, 1], [null]]);
});

test("viridis: the ends of the map and clamping", () => {
  assert.deepEqual(ar.viridis(0), [68, 1, 84]);
  assert.deepEqual(ar.viridis(1), [253, 231, 37]);
  assert.deepEqual(ar.viridis(-3), ar.viridis(0));
  assert.deepEqual(ar.viridis(7), ar.viridis(1));
  assert.deepEqual(ar.viridis(NaN), ar.viridis(0));
});

test("colourScale: linear, log, and values the scale cannot show", () => {
  const lin = ar.colourScale(10, 20, false);
  assert.equal(lin(15), 0.5);
  assert.equal(lin(null), null);
  assert.equal(lin(NaN), null);
  const log = ar.colourScale(1, 100, true);
  assert.equal(log(10), 0.5);
  assert.equal(log(0), null);
  assert.equal(log(-1), null);
  assert.equal(ar.colourScale(0, 5, true)(3), null);   // no positive range: nothing drawn on log
});

test("decodeF32: little-endian float32 from base64 (what /api/view sends for planes)", () => {
  const buf = Buffer.alloc(12);
  buf.writeFloatLE(1.5, 0); buf.writeFloatLE(-2, 4); buf.writeFloatLE(NaN, 8);
  const got = ar.decodeF32(buf.toString("base64"));
  assert.equal(got.length, 3);
  assert.equal(got[0], 1.5);
  assert.equal(got[1], -2);
  assert.ok(Number.isNaN(got[2]));
});

test("niceTicks: round values inside the range", () => {
  assert.deepEqual(ar.niceTicks(0, 10, 5), [0, 2, 4, 6, 8, 10]);
  assert.deepEqual(ar.niceTicks(-4, 4, 4), [-4, -2, 0, 2, 4]);
  const t = ar.niceTicks(0.0013, 0.0021, 4);
  assert.ok(t.every((v) => v >= 0.0013 && v <= 0.0021 + 1e-12) && t.length >= 2);
  assert.deepEqual(ar.niceTicks(3, 3, 5), [3]);
});

test("planeText and parsePlane are each other's inverse", () => {
  assert.equal(ar.planeText(4, [1, 3], [2, 0, 4, 0]), "2,:,4,:");
  assert.deepEqual(ar.parsePlane("2,:,4,:", 4), { shown: [1, 3], at: [2, 0, 4, 0] });
  assert.equal(ar.parsePlane("2,:,4", 4), null);           // wrong number of axes
  assert.equal(ar.parsePlane(":,:,:", 3), null);           // three shown axes
});

test("timeLabel: gwpy's 'seconds from' label with the UTC date and the GPS origin", () => {
  // GPS 968654552 = 2010-09-16 06:42:17 UTC (15 leap seconds then)
  const label = ar.timeLabel({ scale: "gps", origin: 968654552, utc_origin: 968654552 + 315964800 - 15 });
  assert.equal(label, "Time [s] from 2010-09-16 06:42:17 UTC (GPS 968654552)");
  assert.equal(ar.withUnit("strain", ""), "strain");
  assert.equal(ar.withUnit("E", "keV"), "E [keV]");
});

test("viewParams: the page's own column field becomes the view's column; other views' fields are dropped", () => {
  const p = ar.viewParams("column", [["hist", "MET_pt"], ["image", "x"], ["bins", "30"], ["where", "n > 1"],
    ["clock", "utc"], ["bins", ""]]);
  assert.equal(p.toString(), "view=column&column=MET_pt&bins=30&where=n+%3E+1");
  assert.equal(ar.viewParams("plane", [["image", "img"], ["plane", "0,:,:"]]).toString(),
    "view=plane&column=img&plane=0%2C%3A%2C%3A");
});

test("fmt: short numbers, exponents for tiny and huge ones, a dash for none", () => {
  assert.equal(ar.fmt(1.23456789), "1.2346");
  assert.equal(ar.fmt(1e-21), "1.00e-21");
  assert.equal(ar.fmt(null), "–");
  assert.equal(ar.fmt(0), "0");
});
