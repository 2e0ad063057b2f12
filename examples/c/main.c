/* LeNet-5 (examples/lenet5.nn) compiled ahead of time by nnc, run from C.
 *
 * Build (README, "From nnc to a C program"):
 *   nnc compile examples/lenet5.nn --random-weights 1 --emit lib -o liblenet5.a
 *   nnc compile examples/lenet5.nn --emit header -o lenet5.h
 *   cc examples/c/main.c -I. liblenet5.a -lm -lpthread -o lenet5
 *
 * Usage: ./lenet5 [IMAGE]   IMAGE holds 784 little-endian f32 values (1x1x28x28); without
 * one, a synthetic image. Prints the 10 logits, one per line, exactly (%.9g round-trips
 * an f32).
 */
#include <stdio.h>
#include <stdlib.h>

#include "lenet5.h"

int main(int argc, char **argv) {
    static float image[NNC_LENET5_INPUT_IMAGE_SIZE];
    static float logits[NNC_LENET5_OUTPUT_LOGITS_SIZE];
    if (argc > 1) {
        FILE *f = fopen(argv[1], "rb");
        if (!f || fread(image, sizeof(float), NNC_LENET5_INPUT_IMAGE_SIZE, f) != NNC_LENET5_INPUT_IMAGE_SIZE) {
            fprintf(stderr, "%s: expected %d f32 values\n", argv[1], NNC_LENET5_INPUT_IMAGE_SIZE);
            return 1;
        }
        fclose(f);
    } else {
        for (int i = 0; i < NNC_LENET5_INPUT_IMAGE_SIZE; i++) image[i] = (float)((i * 37) % 101) / 101.0f;
    }

    void *workspace = malloc(nnc_lenet5_workspace_size());
    const float *inputs[NNC_LENET5_INPUTS] = {image};
    float *outputs[NNC_LENET5_OUTPUTS] = {logits};
    int rc = workspace ? nnc_lenet5_run(workspace, inputs, outputs) : 1;
    if (rc != 0) {
        fprintf(stderr, "run failed (%d%s)\n", rc, rc == 2 ? ": this CPU's features differ from the compiling one's" : "");
        return 1;
    }
    for (int i = 0; i < NNC_LENET5_OUTPUT_LOGITS_SIZE; i++) printf("%.9g\n", logits[i]);
    free(workspace);
    return 0;
}
