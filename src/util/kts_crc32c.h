/* SPDX-License-Identifier: MIT */
/*
 * kts_crc32c: CRC-32C (Castagnoli), with SSE 4.2 where the CPU has it. Used by write_kafka_ts's
 * spool records (src/kafka) and the pipelines' state records (src/pipeline): it lives in util so
 * that dependencies only point down.
 */
#ifndef KTS_CRC32C_H
#define KTS_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32C (Castagnoli) of buf, continuing from crc (start with 0). */
uint32_t kts_crc32c(uint32_t crc, const void *buf, size_t len);

#endif
