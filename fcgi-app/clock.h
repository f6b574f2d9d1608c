/* Clocks: wall time for what is stored or shown (epoch milliseconds),
 * monotonic time for durations and deadlines. */
#ifndef ARS_CLOCK_H
#define ARS_CLOCK_H

long long ars_wall_ms(void);
long long ars_mono_ms(void);
long long ars_mono_us(void);

#endif
