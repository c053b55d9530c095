// C API of the fast Verilator harness of the accelerator (sim/harness/nmx_harness.cpp).
//
// One handle owns one Verilated `nmx_accelerator`, the DRAM model behind its AXI4 master and the
// host's AXI4-Lite master on its register slave. Python drives it through ctypes
// (sim/rtl_harness.py). Every function that simulates returns a negative value once the harness
// has failed (an AXI protocol violation, a hung register access); nmx_error() says why, and the
// handle stays failed.
#ifndef NMX_HARNESS_H
#define NMX_HARNESS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct NmxHarness NmxHarness;

// Results of nmx_run.
#define NMX_RUN_REACHED 1  // the stop condition holds
#define NMX_RUN_BUDGET 0   // max_cycles simulated and the condition does not hold
#define NMX_RUN_FAILED (-1)

// Stop conditions of nmx_run.
#define NMX_UNTIL_IRQ 0   // the irq output is high
#define NMX_UNTIL_IDLE 1  // STATUS.state is not BUSY, polled over AXI4-Lite every poll cycles

// Create a harness: DRAM of mem_size bytes (zero), AXI data bus data_bits wide, read data
// available read_latency cycles after AR, B response write_latency cycles after the last W beat,
// each ready/valid the model drives paused with probability backpressure (0..1) from a PRNG
// seeded with seed. The design is reset for 4 cycles. Returns NULL (see nmx_last_create_error)
// on bad arguments.
NmxHarness* nmx_create(uint64_t mem_size, uint32_t data_bits, uint32_t read_latency,
                       uint32_t write_latency, double backpressure, uint64_t seed);
const char* nmx_last_create_error(void);
void nmx_destroy(NmxHarness* h);

// The DRAM: mem_size bytes at address 0 of the AXI address space (host backdoor access).
uint8_t* nmx_mem(NmxHarness* h);
uint64_t nmx_mem_size(NmxHarness* h);

// Register access over AXI4-Lite (byte offset, 32-bit word). Returns the response code (0 OKAY,
// 2 SLVERR, 3 DECERR) or -1 when the harness failed.
int nmx_reg_read(NmxHarness* h, uint32_t offset, uint32_t* value);
int nmx_reg_write(NmxHarness* h, uint32_t offset, uint32_t value, uint32_t strobe);

// Simulate until `until` holds or max_cycles cycles have passed.
int nmx_run(NmxHarness* h, uint64_t max_cycles, int until, uint32_t poll);
// Simulate exactly n cycles (-1 on failure).
int nmx_step(NmxHarness* h, uint64_t n);

uint64_t nmx_cycles(NmxHarness* h);
int nmx_irq(NmxHarness* h);
const char* nmx_error(NmxHarness* h);

// AXI traffic the DRAM model served: [0] AR bursts, [1] R beats, [2] AW bursts, [3] W beats,
// [4] B responses, [5] error responses (R beats and B responses with SLVERR).
void nmx_axi_stats(NmxHarness* h, uint64_t out[6]);

#ifdef __cplusplus
}
#endif

#endif
