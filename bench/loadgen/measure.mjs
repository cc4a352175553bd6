// What one step measured: latency samples, deliveries, the server's and our own CPU.
import { readFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'

const TICKS = 100 // USER_HZ on Linux

export function procCpuSeconds (pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(fields[11]) + Number(fields[12])) / TICKS
}

export function procRssKiB (pid) {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'))
  if (!line) throw new Error(`the server (pid ${pid}) has exited`)
  return Number(line.split(/\s+/)[1])
}

/** Growable Float64 sample buffer. */
export class Samples {
  constructor () { this.data = new Float64Array(1 << 16); this.length = 0 }
  push (value) {
    if (this.length === this.data.length) {
      const bigger = new Float64Array(this.data.length * 2)
      bigger.set(this.data)
      this.data = bigger
    }
    this.data[this.length++] = value
  }

  percentiles () {
    const sorted = this.data.slice(0, this.length).sort()
    const at = (q) => sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : null
    return { n: sorted.length, p50: at(0.5), p99: at(0.99), p999: at(0.999), max: at(1 - 1e-12) }
  }
}

/** One measurement window: call `start()`, let traffic run, then `finish()`. */
export class Step {
  constructor (serverPid) {
    this.serverPid = serverPid
    this.latency = new Samples()
    this.ackLatency = new Samples()
    this.deliveries = 0
    this.sent = 0
    this.ackErrors = {}
    this.recording = false
  }

  start () {
    this.recording = true
    this.t0 = performance.now()
    this.cpu0 = process.cpuUsage()
    this.server0 = this.serverPid ? procCpuSeconds(this.serverPid) : 0
    this.maxRss = this.serverPid ? procRssKiB(this.serverPid) : 0
    this.rssTimer = setInterval(() => {
      if (this.serverPid) this.maxRss = Math.max(this.maxRss, procRssKiB(this.serverPid))
    }, 1000)
  }

  stop () {
    this.recording = false
    clearInterval(this.rssTimer)
    const seconds = (performance.now() - this.t0) / 1000
    const cpu = process.cpuUsage(this.cpu0)
    this.seconds = seconds
    this.generatorCpu = (cpu.user + cpu.system) / 1e6 / seconds
    this.serverCpuSeconds = this.serverPid ? procCpuSeconds(this.serverPid) - this.server0 : null
  }

  report (extra = {}) {
    const lat = this.latency.percentiles()
    const ack = this.ackLatency.percentiles()
    return {
      ...extra,
      seconds: round(this.seconds, 2),
      sent: this.sent,
      deliveries: this.deliveries,
      deliveries_per_s: round(this.deliveries / this.seconds, 1),
      latency_ms: roundAll(lat),
      ack_latency_ms: ack.n ? roundAll(ack) : null,
      ack_errors: this.ackErrors,
      server_cpu: this.serverCpuSeconds === null ? null : round(this.serverCpuSeconds / this.seconds, 3),
      server_cpu_us_per_delivery: this.serverCpuSeconds === null || !this.deliveries ? null
        : round(this.serverCpuSeconds * 1e6 / this.deliveries, 1),
      server_rss_mib: round(this.maxRss / 1024, 1),
      generator_cpu: round(this.generatorCpu, 3),
    }
  }
}

export function round (x, digits = 3) { return x === null || x === undefined ? x : Number(x.toFixed(digits)) }
export function roundAll (obj) { return Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, k === 'n' ? v : round(v, 3)])) }
