-- wrk script for bench/run.py: counts answers other than the expected body (wrk arg 1, may be
-- empty) and prints one machine-readable line, since wrk's own summary has no p50/p99 fields.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  expected = args[1]
  if expected == "" then
    expected = nil
  end
  bad = 0
end

function response(status, headers, body)
  if status ~= 200 or (expected ~= nil and body ~= expected) then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local bad_total = 0
  for _, thread in ipairs(threads) do
    bad_total = bad_total + thread:get("bad")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bad": %d, "socket_errors": %d, '
      .. '"p50_us": %.1f, "p99_us": %.1f}\n',
    summary.requests, summary.duration, bad_total, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
